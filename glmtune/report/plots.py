"""Training curves from a run's ``steps.jsonl`` (every optimiser step) and ``log.jsonl`` (eval loss, guard
events; also the train curves of runs that have no ``steps.jsonl``): loss, learning rate, grad norm."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

# One figure per entry: file stem -> (title, [(log key, label)], y-axis label, log-scale y).
FIGURES: dict[str, tuple[str, list[tuple[str, str]], str, bool]] = {
    "loss": ("Loss", [("loss", "train loss"), ("eval_loss", "eval loss")], "loss", False),
    "learning_rate": ("Learning rate", [("learning_rate", "learning rate")], "learning rate", False),
    "grad_norm": ("Gradient norm (before clipping)", [("grad_norm", "grad norm")], "grad norm", True),
}
NOT_STABILITY = ("end",)  # log events that record the run, not something the guard did


def read_log(path: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of a ``log.jsonl`` and a note for each unreadable line (the report never fails on one)."""
    path = Path(path)
    if not path.is_file():
        return [], []
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            notes.append(f"{path.name}:{lineno}: not valid JSON ({exc.msg})")
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            notes.append(f"{path.name}:{lineno}: not a JSON object")
    return rows, notes


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def series(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of ``key`` over the Trainer log rows (guard events excluded), finite values only."""
    steps, values = [], []
    for row in rows:
        if "event" in row or not _finite(row.get(key)) or not _finite(row.get("step")):
            continue
        steps.append(float(row["step"]))
        values.append(float(row[key]))
    return steps, values


def events(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stability-guard events of a log (rows with an ``event`` key, except the run's own ``end`` row).

    One row per (step, event): a row logged again (a resumed run replaying steps after its checkpoint, in logs
    written before resumes dropped those rows) replaces the earlier one.
    """
    found: dict[tuple[Any, Any], dict[str, Any]] = {}
    for row in rows:
        if "event" in row and row.get("event") not in NOT_STABILITY:
            key = (row.get("step"), row.get("event"))
            found.pop(key, None)
            found[key] = row
    return sorted(found.values(), key=lambda r: r["step"] if _finite(r.get("step")) else math.inf)


def curve_rows(log_rows: list[dict[str, Any]], step_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows to draw: per-step train values when ``steps.jsonl`` has them, plus the log's eval losses and events."""
    if not any(_finite(r.get("loss")) for r in step_rows):
        return log_rows
    evals = [{"step": r["step"], "eval_loss": r["eval_loss"]} for r in log_rows
             if "event" not in r and _finite(r.get("eval_loss")) and _finite(r.get("step"))]
    latest = {r["step"]: r for r in step_rows if _finite(r.get("step"))}  # a replayed step counts once
    return [*latest.values(), *evals, *[r for r in log_rows if "event" in r]]


def plot_curves(
    rows: list[dict[str, Any]], out_dir: str | Path, best_step: int | None = None
) -> dict[str, Path]:
    """Draw each curve that has data as ``out_dir/<name>.png`` (Agg, no display); return name -> path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    guard_steps = sorted({float(e["step"]) for e in events(rows) if _finite(e.get("step"))})
    for name, (title, keys, ylabel, log_y) in FIGURES.items():
        lines = [(label, *series(rows, key)) for key, label in keys]
        lines = [line for line in lines if line[1]]
        if not lines:
            continue
        fig = Figure(figsize=(6.4, 3.4), dpi=110, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for label, steps, values in lines:
            marker = "o" if len(steps) < 30 or label.startswith("eval") else None
            ax.plot(steps, values, label=label, marker=marker, markersize=3.5, linewidth=1.6)
        if log_y and all(v > 0 for _, _, values in lines for v in values):
            ax.set_yscale("log")  # a spike is visible next to small norms
        if (
            name == "grad_norm"
        ):  # the guard sees every step, the log only every logging_steps: show its spikes
            spikes = [
                (float(e["step"]), float(e["grad_norm"]))
                for e in events(rows)
                if _finite(e.get("step")) and _finite(e.get("grad_norm"))
            ]
            if spikes:
                ax.scatter(*zip(*spikes), marker="x", s=40, color="#d62728", zorder=3, label="guard event")
        if name == "loss":
            for i, step in enumerate(guard_steps):
                ax.axvline(
                    step,
                    color="#d62728",
                    linestyle="--",
                    linewidth=1,
                    alpha=0.7,
                    label="guard event" if i == 0 else None,
                )
            if best_step is not None:
                ax.axvline(
                    best_step, color="#2ca02c", linestyle=":", linewidth=1.5, label=f"best step {best_step}"
                )
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if name == "learning_rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        if len(lines) > 1 or name == "loss" or (guard_steps and name == "grad_norm"):
            ax.legend(loc="best", fontsize="small")
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{name}.png"
        fig.savefig(path)
        written[name] = path
    return written
