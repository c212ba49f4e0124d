"""Preflight: option combinations that cannot train fail before any data or model is read, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.parametrize("key", ["unlikelihood", "spelling_weight"])
def test_an_identity_weight_without_a_name_is_a_config_error(key: str, tiny_model: Path, tmp_path: Path) -> None:
    """identity.unlikelihood / identity.spelling_weight without identity.name names the key before any data is read."""
    from glmtune.config.loader import ConfigError, validate_config
    from glmtune.train.recipe import train

    cfg = validate_config({"model": {"name_or_path": str(tiny_model)},
                           "data": {"train_file": str(tmp_path / "missing.jsonl")},
                           "identity": {key: 2.0},
                           "training": {"output_dir": str(tmp_path / "run"), "max_steps": 1, "report_to": []}})
    with pytest.raises(ConfigError, match=f"identity.{key}: a weight needs identity.name"):
        train(cfg)
