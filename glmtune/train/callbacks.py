"""Trainer callbacks: a machine-readable step log and a progress bar with loss, lr, tokens/s and ETA."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm
from transformers import TrainerCallback


class JsonlLogCallback(TrainerCallback):
    """Append every Trainer log (loss, learning rate, grad norm, eval loss) to ``log.jsonl``."""

    def __init__(self, path: str | Path, append: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not append:
            self.path.write_text("")

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        """Write one JSON object per log event (main process only)."""
        if state.is_world_process_zero and logs:
            self.write({"step": state.global_step, "epoch": state.epoch, **logs})

    def write(self, row: dict) -> None:
        """Append one row (also used for stability-guard events)."""
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


class ProgressBarCallback(TrainerCallback):
    """A tqdm bar over optimiser steps showing loss, learning rate and trained tokens per second."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None
        self.start = 0.0
        self.postfix: dict[str, str] = {}

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
        self.bar.set_postfix(self.postfix, refresh=False)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        """Show the latest loss and learning rate."""
        if self.bar is None or not logs:
            return
        if "loss" in logs and isinstance(logs["loss"], (int, float)) and math.isfinite(logs["loss"]):
            self.postfix["loss"] = f"{logs['loss']:.4f}"
        if "learning_rate" in logs:
            self.postfix["lr"] = f"{logs['learning_rate']:.2e}"
        if "eval_loss" in logs:
            self.postfix["eval"] = f"{logs['eval_loss']:.4f}"
        self.bar.set_postfix(self.postfix)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
