"""Trainer callbacks and progress: a machine-readable step log, per-step curves, and progress bars.

The training bar shows the loss, learning rate and gradient norm of the latest optimiser step whose values
were read back from the device (every step on small runs, see ``glmtune.train.trainer.readback_every``),
marked with that step when it is not the current one, and nothing before the first read-back: never a
placeholder that looks like a value. ``glmtune.progress`` gives the same kind of bar to work outside the
Trainer (evaluation, self-replay drafting): on stderr, on the main process only.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm
from transformers import TrainerCallback

STEPS_FILE = "steps.jsonl"  # one row per optimiser step: loss, grad_norm, learning_rate (the report's curves)


def keep_rows_until(path: Path, step: int) -> int:
    """Drop the rows of a JSONL log after ``step`` (a resumed run logs them again); return how many."""
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row_step = json.loads(line).get("step")
        except (ValueError, AttributeError):
            row_step = None
        if isinstance(row_step, (int, float)) and row_step > step:
            dropped += 1
        else:
            kept.append(line + "\n")
    if dropped:
        path.write_text("".join(kept), encoding="utf-8")
    return dropped


class JsonlLogCallback(TrainerCallback):
    """Append every Trainer log (loss, learning rate, grad norm, eval loss) to ``log.jsonl``."""

    def __init__(self, path: str | Path, append: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.resumed = append
        if not append:
            self.path.write_text("")

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """On the first step of a resumed run, drop the rows logged after its checkpoint: they are replayed."""
        if self.resumed:
            self.resumed = False
            if state.is_world_process_zero:
                keep_rows_until(self.path, state.global_step)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        """Write one JSON object per log event (main process only)."""
        if state.is_world_process_zero and logs:
            self.write({"step": state.global_step, "epoch": state.epoch, **logs})

    def write(self, row: dict) -> None:
        """Append one row (also used for stability-guard events)."""
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


class StepLog:
    """``steps.jsonl``: the loss, gradient norm and learning rate of every optimiser step."""

    def __init__(self, path: str | Path, append: bool = False) -> None:
        self.path = Path(path)
        self.resumed = append
        if not append:
            self.path.write_text("")

    def write(self, rows: list[dict]) -> None:
        """Append rows; the first write of a resumed run first drops the rows it replays."""
        if self.resumed and rows:
            self.resumed = False
            keep_rows_until(self.path, rows[0]["step"] - 1)
        with self.path.open("a", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")


class ProgressBarCallback(TrainerCallback):
    """A tqdm bar over optimiser steps showing loss, learning rate, grad norm and trained tokens per second."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None
        self.start = 0.0
        self.postfix: dict[str, str] = {}
        self.shown_step: int | None = None  # the step whose loss/lr/grad norm the bar shows

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Open the bar."""
        if state.is_world_process_zero:
            self.bar = tqdm(total=state.max_steps, desc="train", unit="step", dynamic_ncols=True)
            self.start = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Advance and refresh tokens/s."""
        if self.bar is None:
            return
        self.bar.update(state.global_step - self.bar.n)
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        tokens = getattr(state, "num_input_tokens_seen", 0) or 0
        self.postfix["tok/s"] = f"{tokens / elapsed:,.0f}"
        self._mark(state.global_step)
        self.bar.set_postfix(self.postfix, refresh=False)

    def _mark(self, current: int) -> None:
        """Name the step the values are from when it is not the current one."""
        if self.shown_step is not None and self.shown_step != current:
            self.postfix["at"] = f"step {self.shown_step}"
        else:
            self.postfix.pop("at", None)

    def show_steps(self, rows: list[dict]) -> None:
        """Show the latest read-back step's loss, lr and grad norm (marked with its step when it lags)."""
        if self.bar is None or not rows:
            return
        row = rows[-1]
        for key, name, form in (("loss", "loss", ".4f"), ("learning_rate", "lr", ".2e"), ("grad_norm", "gnorm", ".3g")):
            value = row.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.postfix[name] = format(value, form) if math.isfinite(value) else str(value)
            else:
                self.postfix.pop(name, None)
        self.shown_step = int(row["step"])
        self._mark(self.bar.n + 1)  # read-back happens inside the step, before the bar advances
        self.bar.set_postfix(self.postfix, refresh=False)  # drawn with the step's own update

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        """Show the latest eval loss (train values come from ``show_steps``, per step)."""
        if self.bar is None or not logs:
            return
        if "eval_loss" in logs:
            self.postfix["eval"] = f"{logs['eval_loss']:.4f}"
            self.bar.set_postfix(self.postfix)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
