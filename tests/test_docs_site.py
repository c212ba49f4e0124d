"""The documentation site builds with --strict, and its two generated reference pages match the code."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_{name}", DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_site_builds_strict(tmp_path):
    """A broken link, anchor, snippet or nav entry fails the build; nothing is fetched from the network."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for page in ("index.html", "config/index.html", "cli/index.html", "design/index.html",
                 "benchmarks/results/index.html", "benchmarks/history/index.html", "changelog/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
    home = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "Why it exists" in home and "The tiny base says it is ChatGLM" in home  # README sections, included
    history = (tmp_path / "site" / "benchmarks" / "history" / "index.html").read_text(encoding="utf-8")
    assert "session 2" in history  # bench/HISTORY.md, included


def test_config_page_is_generated_from_the_schema():
    """docs/config.md is exactly what docs/gen_config.py writes; after a schema change, rerun it."""
    expected = _load("gen_config").render()
    actual = (DOCS / "config.md").read_text(encoding="utf-8")
    assert actual == expected, "docs/config.md is out of date: run python docs/gen_config.py"


def test_cli_page_has_every_command_and_option():
    """Every subcommand and every option string of the parser is on docs/cli.md; rerun docs/gen_cli.py."""
    gen_cli = _load("gen_cli")
    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    missing = []
    for name, _, parser in gen_cli.commands():
        if f"## `glmtune {name}`" not in page:
            missing.append(f"glmtune {name}")
        for action in parser._actions:
            missing += [f"glmtune {name} {opt}" for opt in action.option_strings if opt not in page]
    assert not missing, f"docs/cli.md is out of date (run python docs/gen_cli.py): {missing}"


def test_generations_table_is_drawn_from_the_real_templates():
    """docs/guides/glm-generations.md's table is what the real templates do; rerun docs/gen_generations.py."""
    import pytest

    gen = _load("gen_generations")
    if not gen.TEMPLATES.is_dir():
        pytest.skip(f"the reference templates are not at {gen.TEMPLATES}")
    assert gen.page_table() == gen.render(), "out of date: run python docs/gen_generations.py"
    assert "| GLM-Z1-9B-0414 | glm-z1 | `<\\|assistant\\|>\\n<think>`" in gen.page_table()
