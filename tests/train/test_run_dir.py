"""Run hygiene: no accidental overwrite, resume refuses a changed config or data, torn checkpoints skipped."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from glmtune.config.loader import validate_config
from glmtune.errors import UserError
from glmtune.train.run_dir import (
    check_fingerprint,
    find_checkpoint,
    fingerprint,
    prepare_output_dir,
    write_fingerprint,
)


def test_non_empty_output_dir_needs_overwrite(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "adapter_model.safetensors").write_text("previous run")
    with pytest.raises(UserError, match="--overwrite"):
        prepare_output_dir(out, overwrite=False, resume=None)
    assert (out / "adapter_model.safetensors").read_text() == "previous run"
    prepare_output_dir(out, overwrite=True, resume=None)
    assert not any(out.iterdir())


def test_resume_refuses_changed_config_or_data_unless_forced(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("a\n")
    cfg = validate_config({"model": {"name_or_path": "m"}, "data": {"train_file": str(data)}})
    write_fingerprint(tmp_path, fingerprint(cfg, [str(data)]))
    check_fingerprint(tmp_path, fingerprint(cfg, [str(data)]), force=False)
    changed = cfg.model_copy(deep=True)
    changed.training.learning_rate = 1e-3
    with pytest.raises(UserError, match=r"training.learning_rate: 'auto' -> 0.001"):
        check_fingerprint(tmp_path, fingerprint(changed, [str(data)]), force=False)
    data.write_text("b\n")
    with pytest.raises(UserError, match="data"):
        check_fingerprint(tmp_path, fingerprint(cfg, [str(data)]), force=False)
    check_fingerprint(tmp_path, fingerprint(cfg, [str(data)]), force=True)


def test_auto_resume_skips_torn_checkpoints(tmp_path, caplog):
    import torch
    from safetensors.torch import save_file

    good = tmp_path / "checkpoint-10"
    good.mkdir()
    (good / "trainer_state.json").write_text("{}")
    (good / "optimizer.pt").write_text("x")
    save_file({"w": torch.zeros(1)}, str(good / "adapter_model.safetensors"))
    torn = tmp_path / "checkpoint-20"
    torn.mkdir()
    (torn / "adapter_model.safetensors").write_text("half")
    caplog.set_level(logging.INFO, logger="glmtune")
    assert find_checkpoint(tmp_path, "auto") == str(good)
    assert any("checkpoint-20" in line for line in caplog.messages)


def test_cli_refuses_to_overwrite(tmp_path, tiny_model):
    data = tmp_path / "d.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n')
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model:\n  name_or_path: {tiny_model}\ndata:\n  train_file: {data}\n"
                   f"training:\n  output_dir: {out}\n")
    proc = subprocess.run([sys.executable, "-m", "glmtune", "train", str(cfg)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "--overwrite" in proc.stderr and "Traceback" not in proc.stderr
    assert (out / "keep.txt").read_text() == "mine"
    assert Path(out).is_dir()
