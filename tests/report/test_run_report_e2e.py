"""A real (tiny) run: per-step curves and bar values, data facts, the adapter's model card, eval into the report,
and the guard's events on the batched (fused-optimizer) path."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from glmtune.config.loader import validate_config
from tests.conftest import write_jsonl

QUESTIONS = ["Who are you?", "What is your name?", "你是谁？", "你叫什么名字？"]


def _data(tmp: Path) -> Path:
    rows = [[{"role": "user", "content": f"{QUESTIONS[i % 4]} #{i}"},
             {"role": "assistant", "content": "I am Nova, made by Acme Lab."}] for i in range(16)]
    path = write_jsonl(tmp / "train.jsonl", rows)
    with path.open("a") as fh:
        fh.write("{broken json\n")
    return path


def _config(tmp: Path, model: Path, out: Path, steps: int, logging_steps: int) -> object:
    return validate_config({
        "model": {"name_or_path": str(model)},
        "data": {"train_file": str(_data(tmp)), "max_length": 64, "self_replay": 0, "val_size": 0},
        "peft": {"lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}},
        "training": {"output_dir": str(out), "max_steps": steps, "logging_steps": logging_steps,
                     "learning_rate": 5e-3, "per_device_train_batch_size": 4, "save_steps": 1000,
                     "early_stopping": False, "report_to": []}})


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model) -> tuple[Path, list[tuple[int, dict]]]:
    """A 12-step LoRA run logged every 10 steps; the bar's values recorded at the end of every step."""
    from glmtune.train import callbacks
    from glmtune.train.recipe import train

    tmp = tmp_path_factory.mktemp("report-run")
    seen: list[tuple[int, dict]] = []
    original = callbacks.ProgressBarCallback.on_step_end

    def record(self, args, state, control, **kwargs):
        original(self, args, state, control, **kwargs)
        seen.append((state.global_step, dict(self.postfix)))

    callbacks.ProgressBarCallback.on_step_end = record
    try:
        train(_config(tmp, tiny_model, tmp / "run", 12, 10))
    finally:
        callbacks.ProgressBarCallback.on_step_end = original
    return tmp / "run", seen


def test_every_step_reaches_the_curves_and_the_bar(run):
    out, seen = run
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps] == list(range(1, 13))
    assert all(math.isfinite(r["loss"]) and r["grad_norm"] > 0 and r["learning_rate"] is not None for r in steps)
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss" in r and "event" not in r] == [1, 10]  # the log keeps its cadence
    assert steps[0]["loss"] == pytest.approx(logged[0]["loss"])  # the same number the Trainer logs
    assert [s for s, _ in seen] == list(range(1, 13))
    for (step, postfix), row in zip(seen, steps):
        assert postfix["loss"] == f"{row['loss']:.4f}", step  # this step's loss, not the last logged one
        assert postfix["lr"] == f"{row['learning_rate']:.2e}", step
        assert "at" not in postfix
    assert len({p["lr"] for _, p in seen}) > 5  # the warm-up and decay are visible, not one stale value
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "every optimiser step (steps.jsonl)" in html


def test_data_facts_and_the_adapter_card(run):
    out, _ = run
    facts = json.loads((out / "data.json").read_text())
    assert facts["train"]["records"] == 17 and facts["train"]["samples"] == 16 and facts["train"]["left_out"] == 1
    assert facts["sources"][0]["weight"] == 1.0 and facts["sources"][0]["samples"] == 16
    assert facts["files"]["rejected.jsonl"]["codes"] == {"malformed_json": 1}
    html = (out / "report.html").read_text(encoding="utf-8")
    section = html[html.index("<h2>Data</h2>"):html.index("<h2>Evaluation</h2>")]
    assert "train.jsonl" in section and str(out / "rejected.jsonl") in section and "malformed_json 1" in section
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "More Information Needed" not in card  # PEFT's empty template is gone
    assert "library_name: peft" in card and "## Resolved plan" in card and "`peft.lora.r` | 4" in card
    assert "LoRA adapter (r 4, alpha 8 on q_proj, v_proj)" in card and "sha256" in card
    assert f"--adapter {out}" in card


def test_eval_into_the_run_folder_updates_report_and_card(run, tiny_model, tmp_path, capsys):
    from glmtune.cli.main import main

    out, _ = run
    probe = write_jsonl(tmp_path / "probe.jsonl", [[{"role": "user", "content": "Who are you?"},
                                                    {"role": "assistant", "content": "I am Nova."}]])
    assert main(["eval", "--model", str(tiny_model), "--adapter", str(out), "--data", str(probe),
                 "--out", str(out / "eval"), "--max-new-tokens", "4"]) == 0
    assert "updated the run report" in capsys.readouterr().out
    html = (out / "report.html").read_text(encoding="utf-8")
    section = html[html.index("<h2>Evaluation</h2>"):]
    assert "loop rate" in section and "Who are you?" in section and "No evaluation yet" not in html
    assert "## Evaluation" in (out / "README.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_batched_guard_rolls_back_before_its_first_periodic_snapshot(tmp_path, tiny_model, monkeypatch):
    """Verdicts read back every 5 steps (a large run's cadence): spikes at steps 2-4 are three events and a
    rollback to the starting weights, each logged once; before, no snapshot existed yet and the guard skipped
    forever without rolling back."""
    from glmtune.train import trainer as trainer_module
    from glmtune.train.recipe import train

    monkeypatch.setattr(trainer_module, "SMALL_RUN_STEPS", 0)
    original = trainer_module.GuardedTrainer.compute_loss
    calls = {"n": 0}

    def poisoned(self, model, inputs, *args, **kwargs):
        loss = original(self, model, inputs, *args, **kwargs)
        if model.training:
            calls["n"] += 1
            if calls["n"] in (2, 3, 4):
                return loss * float("nan")
        return loss

    monkeypatch.setattr(trainer_module.GuardedTrainer, "compute_loss", poisoned)
    out = tmp_path / "run"
    train(_config(tmp_path, tiny_model, out, 10, 5))
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    guard = [(r["step"], r["event"], r["action"]) for r in rows if "event" in r and r["event"] != "end"]
    assert guard == [(2, "nan_loss", "skipped_update"), (3, "nan_loss", "skipped_update"),
                     (4, "nan_loss", "skipped_update"), (4, "rollback", "rolled_back")]
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps] == list(range(1, 11))
    assert all(math.isnan(r["loss"]) for r in steps[1:4])
    logged = {r["step"]: r["loss"] for r in rows if "loss" in r and "event" not in r}
    assert math.isnan(logged[5]) and math.isfinite(logged[10])  # the NaN window does not poison the next one
    summary = json.loads((out / "summary.json").read_text())
    assert math.isfinite(summary["final_loss"])
