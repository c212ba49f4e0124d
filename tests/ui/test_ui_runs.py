"""Runs found from their folders (state, progress, curves, guard events) and the rules on starting them,
without training: run folders are written by hand, and a live process stands in for a running training."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil
import pytest

from glmtune.errors import UserError
from glmtune.ui.progress import curve_figure, read_progress
from glmtune.ui.runs import (
    CONFIG,
    EXIT,
    LOG,
    PID,
    STOP,
    Launcher,
    adapter_choices,
    base_model_of,
    describe,
    log_tail,
    run_state,
)
from glmtune.ui.workspace import Workspace


@pytest.fixture()
def ws(tmp_path: Path) -> Workspace:
    return Workspace.create(tmp_path / "ws")


def make_run(ws: Workspace, name: str, pid: dict | None = None, **files: str) -> Path:
    """A run folder with its config and the given files (``ui_train_log`` -> ``ui-train.log``)."""
    run = ws.runs / name
    run.mkdir()
    (run / CONFIG).write_text(f"model:\n  name_or_path: /models/base\ntraining:\n  output_dir: {run}\n")
    if pid is not None:
        (run / PID).write_text(json.dumps(pid))
    for key, text in files.items():
        (run / key.replace("ui_train_", "ui-train.").replace("_json", ".json")).write_text(text)
    return run


def this_process() -> dict:
    """A pid file naming the test process itself: a run that is "running"."""
    return {"pid": os.getpid(), "create_time": psutil.Process().create_time()}


def dead_process() -> dict:
    return {"pid": 2**22 + 12345, "create_time": 1.0}


def test_run_state_comes_from_the_folder(ws: Workspace):
    assert run_state(make_run(ws, "planned")).status == "not started"
    assert run_state(make_run(ws, "live", this_process())).status == "running"
    finished = make_run(ws, "done", dead_process(), summary_json="{}")
    (finished / EXIT).write_text('{"code": 0}')
    assert run_state(finished).status == "finished"
    stopped = make_run(ws, "stopped", dead_process())
    (stopped / STOP).write_text("1")
    assert run_state(stopped).status == "stopped"
    failed = make_run(ws, "broken", dead_process(), ui_train_log="loading\nerror: data.train_file: file not found\n")
    (failed / EXIT).write_text('{"code": 2}')
    state = run_state(failed)
    assert state.status == "failed" and state.exit_code == 2
    assert describe(state) == "run broken failed (exit code 2): error: data.train_file: file not found"
    reused = make_run(ws, "reused", {"pid": os.getpid(), "create_time": 1.0})  # a pid now used by another process
    assert run_state(reused).status == "failed"


def test_a_second_training_is_refused_while_one_runs(ws: Workspace):
    make_run(ws, "run-1", this_process())
    launcher = Launcher(ws)
    with pytest.raises(UserError, match="run run-1 is training .* one run trains at a time"):
        launcher.start("run-2", {"model": {"name_or_path": "m"}, "data": {"train_file": "d.jsonl"}})
    assert not (ws.runs / "run-2").exists()  # nothing written, nothing started
    with pytest.raises(UserError, match="is training already"):
        launcher.resume("run-1")


def test_start_resume_and_stop_refuse_what_cannot_be_done(ws: Workspace):
    finished = make_run(ws, "done", dead_process(), summary_json="{}")
    launcher = Launcher(ws)
    with pytest.raises(UserError, match="already exists \\(finished\\)"):
        launcher.start("done", {"model": {"name_or_path": "m"}})
    with pytest.raises(UserError, match="has finished; there is nothing to resume"):
        launcher.resume("done")
    with pytest.raises(UserError, match="is not training \\(finished\\)"):
        launcher.stop("done")
    assert run_state(finished).status == "finished"


def test_log_tail_keeps_the_latest_progress_bar_line(tmp_path: Path):
    (tmp_path / LOG).write_text("plan ready\ntrain:  10%|█ | 1/10\rtrain:  20%|██ | 2/10\rtrain:  30%|███ | 3/10\n"
                                "interrupted\n")
    assert log_tail(tmp_path) == "plan ready\ntrain:  30%|███ | 3/10\ninterrupted"


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_progress_curves_and_guard_events_from_the_run_files(tmp_path: Path):
    steps = [{"step": i, "loss": 3.0 - 0.1 * i, "grad_norm": 1.0 + (5 if i == 4 else 0), "learning_rate": 1e-3}
             for i in range(1, 11)]
    write_jsonl(tmp_path / "steps.jsonl", steps)
    log = [{"step": 1, "loss": 2.9, "train_runtime": 1.0, "num_input_tokens_seen": 500, "train_tokens_per_second": 500},
           {"step": 5, "loss": 2.5, "train_runtime": 3.0, "num_input_tokens_seen": 2500},
           {"step": 5, "eval_loss": 2.6},
           {"step": 4, "event": "grad_spike", "action": "skipped_update", "loss": 2.6, "grad_norm": 6.0},
           {"step": 8, "event": "rollback", "action": "rolled_back", "loss": 9.0, "grad_norm": 2.0},
           {"step": 10, "event": "end", "best_step": 5, "best_eval_loss": 2.6, "stopped_early": True}]
    write_jsonl(tmp_path / "log.jsonl", log)
    (tmp_path / "plan.json").write_text(json.dumps({"plan": [{"key": "training.total_steps", "value": 20}]}))
    progress = read_progress(tmp_path)
    assert (progress.step, progress.total, progress.points) == (10, 20, 10)
    assert progress.eta_s == pytest.approx(10 / 2.0)  # 4 steps in 2 s of train_runtime, 10 steps to go
    line = progress.markdown("running")
    for part in ("step 10 / 20 (50%)", "833 tokens/s", "ETA 0:05", "train loss 2", "eval loss 2.6",
                 "stopped early; best step 5"):
        assert part in line, line
    events = progress.event_rows()
    assert [e[0] for e in events] == [4, 8, 10]
    assert "gradient spike: update skipped" in events[0][1] and "rollback" in events[1][1]
    assert "early stop" in events[2][1] and "best step 5" in events[2][2]
    fig = curve_figure(progress)
    loss_ax = fig.axes[0]
    assert len(fig.axes) == 3 and [t.get_text() for t in loss_ax.get_legend().get_texts()] == [
        "train loss", "eval loss", "guard: update skipped", "guard: rollback", "early stop"]


def test_before_the_first_step_the_page_says_what_is_happening(tmp_path: Path):
    progress = read_progress(tmp_path)
    assert progress.step == 0 and curve_figure(progress) is None
    assert "preparing" in progress.markdown("running")


def test_finished_runs_and_checkpoints_are_offered_with_their_base_model(ws: Workspace):
    run = make_run(ws, "run-1", dead_process(), summary_json="{}", adapter_config_json="{}")
    ckpt = run / "checkpoint-4"
    ckpt.mkdir()
    for name in ("trainer_state.json", "adapter_model.safetensors", "optimizer.pt"):
        (ckpt / name).write_text("x")
    (ckpt / "config.yaml").write_text("model:\n  name_or_path: /models/from-checkpoint\n")
    choices = adapter_choices(ws)
    assert choices == [("run-1 (finished)", str(run)), ("run-1/checkpoint-4", str(ckpt))]
    assert base_model_of(run) == "/models/base" and base_model_of(ckpt) == "/models/from-checkpoint"
