"""Live progress of a run from the files it writes: ``steps.jsonl`` (every optimiser step), ``log.jsonl`` (eval
loss, throughput, guard events, the end row) and ``plan.json`` (total steps); drawn with the report's readers."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glmtune.report.plots import curve_rows, events, read_log, series

EVENT_LABELS = {
    "loss_spike": "loss spike: update skipped",
    "grad_spike": "gradient spike: update skipped",
    "nan_loss": "NaN loss: update skipped",
    "nan_grad": "NaN gradient: update skipped",
    "rollback": "rollback to the last good snapshot",
    "final_restore": "final weights restored from a snapshot",
}
_FIRST_SEEN: dict[tuple[str, int | None], tuple[float, int]] = {}  # (run, pid) -> (time, step) first seen > 0
CURVES = (("loss", "train loss"), ("eval_loss", "eval loss"), ("learning_rate", "learning rate"),
          ("grad_norm", "grad norm"))


@dataclass
class Progress:
    """Where a run is: step, total, throughput, ETA, the latest values and the guard's events."""

    step: int = 0
    total: int | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None
    latest: dict[str, float] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    end: dict[str, Any] | None = None  # the run's "end" row: best step, stopped early
    rows: list[dict[str, Any]] = field(default_factory=list)  # what the curves draw

    @property
    def points(self) -> int:
        """Train-loss points on the curve."""
        return len(series(self.rows, "loss")[0])

    def markdown(self, status: str) -> str:
        """One status line: step of total, tokens/s, ETA and the latest values."""
        head = f"**{status}**"
        if not self.step:
            if status == "running":
                return head + " · preparing: reading the data, loading the model (the first step shows up here)"
            return head + " · no step logged"
        share = f" ({100 * self.step / self.total:.0f}%)" if self.total else ""
        parts = [head, f"step {self.step} / {self.total or '?'}{share}"]
        parts.append(f"{self.tokens_per_s:,.0f} tokens/s" if self.tokens_per_s else "tokens/s: —")
        if status == "running":
            parts.append(f"ETA {duration(self.eta_s)}" if self.eta_s is not None else "ETA —")
        for key, label in CURVES:
            if key in self.latest:
                parts.append(f"{label} {self.latest[key]:.4g}")
        if self.end and self.end.get("stopped_early"):
            parts.append(f"stopped early; best step {self.end.get('best_step')}")
        return " · ".join(parts)

    def event_rows(self) -> list[list[Any]]:
        """The guard's events (and an early stop) as table rows: step, event, what it did, loss, grad norm."""
        rows = [[e.get("step"), EVENT_LABELS.get(str(e.get("event")), str(e.get("event"))), e.get("action", ""),
                 _fmt(e.get("loss")), _fmt(e.get("grad_norm"))] for e in self.events]
        if self.end and self.end.get("stopped_early"):
            rows.append([self.end.get("step"), "early stop: validation loss stopped improving",
                         f"kept best step {self.end.get('best_step')}", _fmt(self.end.get("best_eval_loss")), ""])
        return rows


def duration(seconds: float | None) -> str:
    """``H:MM:SS`` (``M:SS`` under an hour)."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    s = max(0, round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""


def total_steps(run_dir: Path) -> int | None:
    """``training.total_steps`` of the run's ``plan.json`` (None before the plan is written)."""
    try:
        items = json.loads((run_dir / "plan.json").read_text(encoding="utf-8"))["plan"]
        value = next(item["value"] for item in items if item["key"] == "training.total_steps")
        return int(value)
    except (OSError, ValueError, KeyError, TypeError, StopIteration):
        return None


def throughput(log_rows: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    """(tokens/s, steps/s) from the Trainer's rows since the latest (re)start of the process."""
    timed = [r for r in log_rows if "event" not in r and isinstance(r.get("train_runtime"), (int, float))
             and isinstance(r.get("step"), (int, float)) and "loss" in r]
    segment: list[dict[str, Any]] = []
    for row in timed:  # train_runtime starts again at a resume
        if segment and row["train_runtime"] < segment[-1]["train_runtime"]:
            segment = []
        segment.append(row)
    if not segment:
        return None, None
    last = segment[-1]
    tokens = last.get("train_tokens_per_second")
    if tokens is None and last.get("num_input_tokens_seen") and last["train_runtime"]:
        tokens = last["num_input_tokens_seen"] / last["train_runtime"]
    first = segment[0]
    if len(segment) > 1 and last["train_runtime"] > first["train_runtime"]:
        rate = (last["step"] - first["step"]) / (last["train_runtime"] - first["train_runtime"])
    else:
        rate = None
    return (float(tokens) if tokens else None), rate


def observed_rate(run_dir: Path, pid: int | None, step: int) -> float | None:
    """Steps per second seen by this UI process since it first saw the run's process past step 0."""
    if step <= 0:
        return None
    now = time.monotonic()
    seen_at, seen_step = _FIRST_SEEN.setdefault((str(run_dir), pid), (now, step))
    return (step - seen_step) / (now - seen_at) if step > seen_step and now > seen_at else None


def read_progress(run_dir: Path, pid: int | None = None) -> Progress:
    """The progress of the run in ``run_dir`` (an empty one before anything is logged); ``pid``: its process,
    for the ETA when the Trainer's log is sparse (``logging_steps`` > 1)."""
    log_rows, _ = read_log(run_dir / "log.jsonl")
    step_rows, _ = read_log(run_dir / "steps.jsonl")
    rows = curve_rows(log_rows, step_rows)
    progress = Progress(total=total_steps(run_dir), rows=rows, events=events(log_rows))
    ends = [r for r in log_rows if r.get("event") == "end"]
    progress.end = ends[-1] if ends else None
    steps = [int(r["step"]) for r in rows if isinstance(r.get("step"), (int, float)) and "event" not in r]
    progress.step = max(steps, default=0)
    for key, _ in CURVES:
        found = series(rows, key)
        if found[0]:
            progress.latest[key] = found[1][found[0].index(max(found[0]))]
    progress.tokens_per_s, rate = throughput(log_rows)
    rate = rate or observed_rate(run_dir, pid, progress.step)
    if rate and progress.total:
        progress.eta_s = max(0, progress.total - progress.step) / rate
    return progress


def curve_figure(progress: Progress) -> Any | None:
    """Loss (train and eval), learning rate and gradient norm side by side, the guard's events and an early
    stop marked on each; None before the first logged step."""
    from matplotlib.figure import Figure

    if not progress.rows:
        return None
    fig = Figure(figsize=(11, 3.2), dpi=96, layout="constrained")
    panels = (("Loss", CURVES[:2], False), ("Learning rate", CURVES[2:3], False),
              ("Gradient norm (before clipping)", CURVES[3:], True))
    for ax, (title, keys, log_y) in zip(fig.subplots(1, 3), panels):
        drawn = []
        for key, label in keys:
            xs, ys = series(progress.rows, key)
            if xs:
                ax.plot(xs, ys, label=label, marker="o" if len(xs) < 40 or key == "eval_loss" else None,
                        markersize=3, linewidth=1.5)
                drawn += ys
        if log_y and drawn and all(v > 0 for v in drawn):
            ax.set_yscale("log")
        _mark_events(ax, progress)
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="x-small", loc="best")
    return fig


def _mark_events(ax: Any, progress: Progress) -> None:
    """Dashed lines at the guard's events (red: update skipped, purple: rollback), dotted at an early stop."""
    labelled: set[str] = set()
    for event in progress.events:
        if not isinstance(event.get("step"), (int, float)):
            continue
        kind = "guard: rollback" if event.get("event") in ("rollback", "final_restore") else "guard: update skipped"
        ax.axvline(float(event["step"]), color="#7b2cbf" if "rollback" in kind else "#d62728", linestyle="--",
                   linewidth=1, alpha=0.8, label=None if kind in labelled else kind)
        labelled.add(kind)
    end = progress.end or {}
    if end.get("stopped_early") and isinstance(end.get("step"), (int, float)):
        ax.axvline(float(end["step"]), color="black", linestyle=":", linewidth=1.5, label="early stop")
