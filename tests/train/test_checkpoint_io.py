"""Crash-safe checkpoints: atomic publish, rotation that keeps the best, clear save errors, guard state resumed."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from glmtune.config.loader import validate_config
from glmtune.errors import UserError
from glmtune.train import checkpoint_io as ckpt
from glmtune.train.run_dir import check_data_unchanged, find_checkpoint, fingerprint
from tests.conftest import write_jsonl

ROWS = [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"answer number {i}"}]
        for i in range(12)]


def fake_checkpoint(run: Path, step: int, complete: bool = True) -> Path:
    """A staged-and-published checkpoint with a manifest (or a torn one without its optimizer)."""
    staging = run / f"{ckpt.STAGING_PREFIX}{step}"
    staging.mkdir(parents=True)
    (staging / "trainer_state.json").write_text("{}")
    save_file({"w": torch.full((2,), float(step))}, str(staging / "adapter_model.safetensors"))
    (staging / "optimizer.pt").write_bytes(b"o" * step)
    ckpt.write_manifest(staging, step, {})
    ckpt.publish(staging, run / f"checkpoint-{step}")
    if not complete:
        (run / f"checkpoint-{step}" / "optimizer.pt").write_bytes(b"cut")
    return run / f"checkpoint-{step}"


def test_publish_is_a_rename_and_leaves_no_staging(tmp_path):
    path = fake_checkpoint(tmp_path, 3)
    assert ckpt.is_complete(path) and not list(tmp_path.glob(".tmp-*"))
    manifest = json.loads((path / ckpt.MANIFEST).read_text())
    assert manifest["step"] == 3 and manifest["files"]["optimizer.pt"] == 3
    (path / "optimizer.pt").write_bytes(b"oo")  # a file shorter than recorded: torn
    assert not ckpt.is_complete(path)


def test_publish_replaces_an_existing_step(tmp_path):
    fake_checkpoint(tmp_path, 4)
    (tmp_path / "checkpoint-4" / "stale.txt").write_text("from the first attempt")
    fake_checkpoint(tmp_path, 4)
    assert not (tmp_path / "checkpoint-4" / "stale.txt").exists() and not list(tmp_path.glob(".tmp-*"))


def test_rotation_keeps_limit_plus_best_and_ignores_torn(tmp_path):
    for step in (1, 2, 3, 4, 5):
        fake_checkpoint(tmp_path, step)
    torn = fake_checkpoint(tmp_path, 6, complete=False)
    deleted = ckpt.rotate(tmp_path, 2, best=tmp_path / "checkpoint-2")
    assert sorted(p.name for p in deleted) == ["checkpoint-1", "checkpoint-3"]
    assert sorted(p.name for p in ckpt.checkpoints(tmp_path)) == ["checkpoint-2", "checkpoint-4", "checkpoint-5",
                                                                   "checkpoint-6"]
    assert torn.exists()  # not counted as one of the kept, not deleted either
    ckpt.rotate(tmp_path, 1, best=None)  # the newest *complete* one survives, not only the torn newest
    assert [p.name for p in ckpt.checkpoints(tmp_path)] == ["checkpoint-5", "checkpoint-6"]
    assert find_checkpoint(tmp_path, "auto") == str(tmp_path / "checkpoint-5")
    assert not list(tmp_path.glob(".tmp-*"))


def test_partial_folders_are_cleaned_on_resume(tmp_path, caplog):
    fake_checkpoint(tmp_path, 2)
    (tmp_path / ".tmp-checkpoint-4").mkdir()
    (tmp_path / ".tmp-checkpoint-4" / "adapter_model.safetensors").write_bytes(b"half")
    caplog.set_level(logging.INFO, logger="glmtune")
    assert ckpt.clean_partial(tmp_path) == [tmp_path / ".tmp-checkpoint-4"]
    assert "interrupted save" in caplog.messages[0] and (tmp_path / "checkpoint-2").exists()


def test_save_error_messages(tmp_path):
    final, previous = tmp_path / "checkpoint-4", tmp_path / "checkpoint-2"
    full = ckpt.save_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(final / "optimizer.pt")), final,
                           previous)
    assert isinstance(full, UserError)
    assert f"could not save checkpoint {final} (ENOSPC: No space left on device; at {final}/optimizer.pt)" in str(full)
    assert f"the previous checkpoint {previous} is intact" in str(full) and "--resume auto" in str(full)
    rust = ckpt.save_error(RuntimeError("Error while serializing: IoError(Os { code: 13, kind: PermissionDenied })"),
                           final, None)
    assert "EACCES: Permission denied" in str(rust) and "no earlier checkpoint exists" in str(rust)
    bug = ValueError("not an I/O problem")
    assert ckpt.save_error(bug, final, previous) is bug


def test_data_changed_while_being_read_is_refused(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", ROWS)
    cfg = validate_config({"model": {"name_or_path": "m"}, "data": {"train_file": str(data)}})
    current = fingerprint(cfg, [str(data)])
    check_data_unchanged(current)
    data.write_text(data.read_text() + data.read_text())
    with pytest.raises(UserError, match=f"data file {data} changed while this run was reading it"):
        check_data_unchanged(current)


def config(tmp: Path, model: Path, out: Path, steps: int, save_steps: int) -> object:
    data = write_jsonl(tmp / "d.jsonl", ROWS)
    return validate_config({"model": {"name_or_path": str(model)}, "data": {"train_file": str(data), "val_size": 0},
                            "training": {"output_dir": str(out), "max_steps": steps, "save_steps": save_steps,
                                         "logging_steps": 1, "per_device_train_batch_size": 2,
                                         "save_total_limit": 3, "early_stopping": False, "report_to": []}})


@pytest.mark.parametrize("code", [pytest.param(errno.ENOSPC, marks=pytest.mark.slow), errno.EACCES])
def test_failed_save_is_reported_and_the_previous_checkpoint_survives(tmp_path, tiny_model, monkeypatch, code):
    from glmtune.train.recipe import train

    out = tmp_path / "run"
    real_save, real_rename = torch.save, os.rename

    def full_disk(obj, f, *args, **kwargs):  # the optimizer file of checkpoint-4 is cut off by a full disk
        if ".tmp-checkpoint-4" in str(f) and str(f).endswith("optimizer.pt"):
            Path(f).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
        return real_save(obj, f, *args, **kwargs)

    def read_only(src, dst):  # publishing checkpoint-4 is not allowed
        if ".tmp-checkpoint-4" in str(src):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(src))
        return real_rename(src, dst)

    if code == errno.ENOSPC:
        monkeypatch.setattr(torch, "save", full_disk)
    else:
        monkeypatch.setattr(os, "rename", read_only)
    with pytest.raises(UserError) as err:
        train(config(tmp_path, tiny_model, out, 4, 2))
    message = str(err.value)
    name = errno.errorcode[code]
    assert f"could not save checkpoint {out / 'checkpoint-4'} ({name}: {os.strerror(code)}" in message
    assert f"the previous checkpoint {out / 'checkpoint-2'} is intact" in message
    assert not (out / ".tmp-checkpoint-4").exists() and not (out / "checkpoint-4").exists()
    monkeypatch.undo()
    assert find_checkpoint(out, "auto") == str(out / "checkpoint-2")
    previous = out / "checkpoint-2"
    assert load_file(str(previous / "adapter_model.safetensors"))
    assert torch.load(previous / "optimizer.pt", weights_only=True)["state"]
    if code == errno.ENOSPC:  # once there is room again, the run continues from the intact checkpoint
        result = train(config(tmp_path, tiny_model, out, 4, 2), resume="auto")
        assert result.steps == 4 and ckpt.is_complete(out / "checkpoint-4")


@pytest.mark.slow
def test_resume_restores_the_guard_state(tmp_path, tiny_model, monkeypatch):
    from glmtune.train import trainer as trainer_module
    from glmtune.train.recipe import train

    original = trainer_module.GuardedTrainer.compute_loss
    calls = {"n": 0}

    def poisoned(self, model, inputs, *args, **kwargs):  # steps 2-4 go NaN: three spikes, then a rollback
        loss = original(self, model, inputs, *args, **kwargs)
        calls["n"] += 1
        return loss * float("nan") if calls["n"] in (2, 3, 4) else loss

    out = tmp_path / "run"
    monkeypatch.setattr(trainer_module.GuardedTrainer, "compute_loss", poisoned)
    train(config(tmp_path, tiny_model, out, 8, 4))
    monkeypatch.undo()
    saved = torch.load(out / "checkpoint-4" / ckpt.GUARD_STATE, weights_only=True)
    assert [e["kind"] for e in saved["events"]] == ["nan_loss", "nan_loss", "nan_loss", "rollback"]
    assert saved["lr_scale"] == 0.5 and saved["snapshot"] is not None
    uninterrupted = torch.load(out / "checkpoint-8" / ckpt.GUARD_STATE, weights_only=True)
    adapter = load_file(str(out / "adapter_model.safetensors"))
    shutil.copytree(out / "checkpoint-4", tmp_path / "checkpoint-4")

    train(config(tmp_path, tiny_model, out, 8, 4), resume=str(tmp_path / "checkpoint-4"))
    resumed = torch.load(out / "checkpoint-8" / ckpt.GUARD_STATE, weights_only=True)
    for key in ("loss_avg", "grad_avg", "good_steps", "recent_spikes", "events", "lr_scale", "max_ratio"):
        assert resumed[key] == uninterrupted[key], key
    summary = json.loads((out / "summary.json").read_text())
    assert [e["kind"] for e in summary["guard_events"]] == ["nan_loss", "nan_loss", "nan_loss", "rollback"]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    logged = [r["event"] for r in log if "event" in r and r["event"] != "end"]
    assert logged == ["nan_loss", "nan_loss", "nan_loss", "rollback"]  # the replayed steps are not logged twice
    steps = [json.loads(line)["step"] for line in (out / "steps.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))
    again = load_file(str(out / "adapter_model.safetensors"))
    assert all(torch.equal(adapter[k], again[k]) for k in adapter)


@pytest.mark.slow
def test_rotation_in_a_run_keeps_the_best_checkpoint(tmp_path, tiny_model, monkeypatch):
    from glmtune.train import trainer as trainer_module
    from glmtune.train.recipe import train

    losses = iter([5.0, 1.0, 3.0, 4.0, 6.0, 7.0])  # validation is best at step 2, then only worse

    def evaluate(self, *args, **kwargs):
        metrics = {"eval_loss": next(losses)}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    monkeypatch.setattr(trainer_module.GuardedTrainer, "evaluate", evaluate)
    out = tmp_path / "run"
    cfg = validate_config({"model": {"name_or_path": str(tiny_model)},
                           "data": {"train_file": str(write_jsonl(tmp_path / "d.jsonl", ROWS)), "val_size": 2},
                           "training": {"output_dir": str(out), "max_steps": 6, "eval_steps": 1, "patience": 10,
                                        "early_stopping": True, "save_total_limit": 2, "logging_steps": 1,
                                        "per_device_train_batch_size": 2, "report_to": []}})
    result = train(cfg)
    assert (result.best_step, result.best_eval_loss) == (2, 1.0)
    assert [p.name for p in ckpt.checkpoints(out)] == ["checkpoint-2", "checkpoint-5", "checkpoint-6"]
    state = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["best_model_checkpoint"] == str(out / "checkpoint-2")  # the published name, not the staging one
    best = load_file(str(out / "checkpoint-2" / "adapter_model.safetensors"))
    final = load_file(str(out / "adapter_model.safetensors"))
    assert all(torch.equal(best[k], final[k]) for k in best)  # the best adapter is the one saved
