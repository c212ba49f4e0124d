"""Fault injection: what the user sees, and what survives, when things go wrong."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from glmtune.config.loader import validate_config
from glmtune.train.run_dir import find_checkpoint
from tests.conftest import write_jsonl

GOOD = [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"answer {i}"}] for i in range(12)]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "glmtune", *args], capture_output=True, text=True, timeout=300)


def test_truncated_data_file_reports_the_cut_line_and_keeps_the_rest(tmp_path, tiny_model):
    data = write_jsonl(tmp_path / "d.jsonl", GOOD)
    raw = data.read_bytes()
    data.write_bytes(raw[: len(raw) - 25])  # the last record is cut mid-way
    proc = cli("data", "tokenize", "--model", str(tiny_model), "--data", str(data), "--out", str(tmp_path / "t.jsonl"))
    assert proc.returncode == 1
    assert "d.jsonl:12: [malformed_json]" in proc.stdout
    assert len((tmp_path / "t.jsonl").read_text().splitlines()) == 11


def test_non_utf8_byte_is_reported_with_its_line(tmp_path, tiny_model):
    data = write_jsonl(tmp_path / "d.jsonl", GOOD)
    lines = data.read_bytes().split(b"\n")
    lines[4] = lines[4].replace(b"answer", b"answ\xffer")
    data.write_bytes(b"\n".join(lines))
    proc = cli("data", "check", str(data), "--quarantine", str(tmp_path / "q.jsonl"))
    assert proc.returncode == 1
    assert "d.jsonl:5" in proc.stdout and "bad_encoding" in proc.stdout
    quarantined = [json.loads(line) for line in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert [q["source"].rsplit(":", 1)[-1] for q in quarantined] == ["5"]


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors", "tokenizer.json"])
def test_model_folder_missing_a_file_gives_a_clear_error(tmp_path, tiny_model, missing):
    broken = tmp_path / "model"
    shutil.copytree(tiny_model, broken)
    (broken / missing).unlink()
    data = write_jsonl(tmp_path / "d.jsonl", GOOD)
    proc = cli("predict", "--model", str(broken), "--data", str(data), "--out", str(tmp_path / "p.jsonl"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert str(broken) in proc.stderr or missing in proc.stderr


def test_corrupted_checkpoint_is_skipped_on_resume(tmp_path, caplog):
    from safetensors.torch import save_file

    for step in (10, 20):
        ckpt = tmp_path / f"checkpoint-{step}"
        ckpt.mkdir()
        (ckpt / "trainer_state.json").write_text("{}")
        (ckpt / "optimizer.pt").write_bytes(b"x")
        save_file({"w": torch.zeros(2)}, str(ckpt / "adapter_model.safetensors"))
    (tmp_path / "checkpoint-20" / "adapter_model.safetensors").write_bytes(b"\x00garbage")
    caplog.set_level(logging.INFO, logger="glmtune")
    assert find_checkpoint(tmp_path, "auto") == str(tmp_path / "checkpoint-10")
    assert any("checkpoint-20" in s and "unreadable" in s for s in caplog.messages)


@pytest.mark.slow
def test_nan_batch_is_skipped_by_the_guard(tmp_path, tiny_model, monkeypatch):
    from glmtune.train import trainer as trainer_module
    from glmtune.train.recipe import train

    original = trainer_module.GuardedTrainer.compute_loss
    calls = {"n": 0}

    def poisoned(self, model, inputs, *args, **kwargs):
        loss = original(self, model, inputs, *args, **kwargs)
        calls["n"] += model.training
        if calls["n"] == 6 and model.training:  # one training batch turns NaN
            return (loss[0] * float("nan"), *loss[1:]) if isinstance(loss, tuple) else loss * float("nan")
        return loss

    monkeypatch.setattr(trainer_module.GuardedTrainer, "compute_loss", poisoned)
    data = write_jsonl(tmp_path / "d.jsonl", GOOD)
    cfg = validate_config({"model": {"name_or_path": str(tiny_model)}, "data": {"train_file": str(data)},
                           "training": {"output_dir": str(tmp_path / "run"), "max_steps": 12, "logging_steps": 1,
                                        "per_device_train_batch_size": 2, "early_stopping": False,
                                        "report_to": []}})
    train(cfg)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [e["kind"] for e in summary["guard_events"]] == ["nan_loss"]
    from safetensors.torch import load_file

    weights = load_file(str(tmp_path / "run" / "adapter_model.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values())
    assert Path(tmp_path / "run" / "report.html").is_file()
