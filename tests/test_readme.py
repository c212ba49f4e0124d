"""The docs' config reference documents every config option; the README shows the two quick-start commands that
CI runs."""

from __future__ import annotations

from pathlib import Path

from glmtune.config.reference import reference_rows

ROOT = Path(__file__).resolve().parents[1]


def test_every_config_option_is_in_the_config_reference():
    page = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    missing = [key for key, _, _ in reference_rows() if f"`{key}`" not in page]
    assert not missing, f"undocumented config keys (run python docs/gen_config.py): {missing}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    command = "pip install torch==2.13.0 -e '.[test]' -c constraints/ci.txt && python -m pytest -q"
    assert command in readme
    assert command in ci
    assert "pip install torch==2.13.0 -e . && glmtune demo" in readme
