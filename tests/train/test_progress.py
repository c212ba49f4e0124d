"""Progress bars and per-step logs: real values from the first step, bars outside the Trainer, resumed logs."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from glmtune.progress import generation_progress
from glmtune.train.callbacks import ProgressBarCallback, StepLog, keep_rows_until
from glmtune.train.trainer import SMALL_RUN_STEPS, readback_every


def _state(step: int, max_steps: int = 30) -> SimpleNamespace:
    return SimpleNamespace(is_world_process_zero=True, max_steps=max_steps, global_step=step,
                           num_input_tokens_seen=100 * step)


def test_bar_shows_nothing_until_a_step_is_known_then_that_steps_values():
    cb = ProgressBarCallback()
    cb.on_train_begin(None, _state(0), None)
    assert "loss" not in cb.postfix and "lr" not in cb.postfix  # no placeholder such as lr=0.00e+00
    cb.on_log(None, _state(0), None, logs={"loss": 9.9, "learning_rate": 0.0})  # the Trainer's window average
    assert "loss" not in cb.postfix and "lr" not in cb.postfix
    cb.show_steps([{"step": 1, "loss": 2.5, "learning_rate": 1e-4, "grad_norm": 0.75}])
    cb.on_step_end(None, _state(1), None)
    assert cb.postfix["loss"] == "2.5000" and cb.postfix["lr"] == "1.00e-04" and cb.postfix["gnorm"] == "0.75"
    assert "at" not in cb.postfix
    cb.show_steps([{"step": 2, "loss": 2.25, "learning_rate": 2e-4, "grad_norm": 0.5}])
    cb.on_step_end(None, _state(2), None)
    assert cb.postfix["loss"] == "2.2500" and cb.postfix["lr"] == "2.00e-04"
    cb.on_step_end(None, _state(3), None)  # no read-back at step 3 (a large run): the values say which step
    assert cb.postfix["loss"] == "2.2500" and cb.postfix["at"] == "step 2"
    cb.on_log(None, _state(3), None, logs={"eval_loss": 2.0})
    assert cb.postfix["eval"] == "2.0000"
    cb.on_train_end(None, _state(3), None)
    assert cb.bar is None


def test_readback_cadence_is_every_step_on_small_runs():
    assert readback_every(30, 10) == 1
    assert readback_every(SMALL_RUN_STEPS, 25) == 1
    assert readback_every(SMALL_RUN_STEPS + 1, 25) == 25
    assert readback_every(-1, 10) == 10  # max_steps unknown


class _Model:
    def __init__(self) -> None:
        self.calls = 0

    def generate(self, input_ids: torch.Tensor, **kwargs) -> torch.Tensor:
        self.calls += 1
        return input_ids


def test_generation_progress_counts_rows_and_restores_generate(monkeypatch):
    model = _Model()
    with generation_progress(model, 7, "test") as bar:
        model.generate(torch.zeros(4, 3))
        model.generate(input_ids=torch.zeros(3, 3))
        assert bar.n == 7
    assert "generate" not in model.__dict__ and model.calls == 2
    model.generate(torch.zeros(1, 1))
    monkeypatch.setenv("RANK", "1")
    with generation_progress(model, 2, "test") as bar:
        assert bar.disable  # only rank 0 draws bars


def test_generation_progress_restores_generate_after_an_error():
    model = _Model()
    with pytest.raises(RuntimeError), generation_progress(model, 1, "test"):
        raise RuntimeError("boom")
    assert "generate" not in model.__dict__


def test_resumed_logs_drop_the_rows_they_replay(tmp_path: Path):
    log = tmp_path / "steps.jsonl"
    StepLog(log).write([{"step": s, "loss": float(s)} for s in range(1, 9)])
    resumed = StepLog(log, append=True)  # resumed from checkpoint-4: steps 5.. run again
    resumed.write([{"step": 5, "loss": 50.0}])
    resumed.write([{"step": 6, "loss": 60.0}])
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[4]["loss"] == 50.0
    other = tmp_path / "log.jsonl"
    other.write_text('{"step": 3, "event": "loss_spike"}\nnot json\n{"step": 9, "loss": 1}\n')
    assert keep_rows_until(other, 4) == 1
    assert other.read_text().splitlines() == ['{"step": 3, "event": "loss_spike"}', "not json"]
