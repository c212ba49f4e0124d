"""transformers' Trainer with the stability guard wired between backward and the optimizer step.

With a fused AdamW (transformers' default optimizer on torch >= 2.8) the guard costs no host sync per step:
its verdict is a device tensor handed to the optimizer as ``found_inf``, which skips the update on the device,
and the verdicts are read back in one batch every ``logging_steps``, where events are logged and rollbacks
and snapshots happen. Any other optimizer gets the per-step check (one host sync per optimiser step).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch
from transformers import Trainer

from glmtune.train.guard import GuardEvent, SpikeGuard, weights_finite


class GuardedTrainer(Trainer):
    """A Trainer whose every optimiser step is judged by a ``SpikeGuard`` (when one is given)."""

    def __init__(self, *args: Any, guard: SpikeGuard | None = None,
                 on_event: Callable[[dict], None] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if guard is not None and (self.is_deepspeed_enabled or self.is_fsdp_enabled):
            guard = None  # the engine owns clipping and the optimizer step; the guard cannot skip inside it
        self.guard = guard
        self.on_event = on_event
        self._step_loss: torch.Tensor | None = None

    def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None) -> torch.Tensor:
        """Run the usual step and remember its (accumulation-scaled) loss for the guard."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.guard is not None:
            self._step_loss = loss.detach() if self._step_loss is None else self._step_loss + loss.detach()
        return loss

    def _get_grad_norm(self, model: Any, grad_norm: Any = None) -> Any:
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        if self.guard is not None:
            fused = self._fused_optimizer()
            if fused is not None and isinstance(grad_norm, torch.Tensor) and self._step_loss is not None:
                self._judge_on_device(fused, grad_norm)
            else:
                self._judge_step(grad_norm)
        return grad_norm

    def _fused_optimizer(self) -> Any:
        """The underlying torch optimizer when it can skip an update from a device flag (fused Adam/AdamW)."""
        inner = getattr(self.optimizer, "optimizer", self.optimizer)
        defaults = getattr(inner, "defaults", {})
        return inner if defaults.get("fused") else None

    def _judge_on_device(self, optimizer: Any, grad_norm: torch.Tensor) -> None:
        guard = self.guard
        assert guard is not None and self._step_loss is not None
        step = self.state.global_step + 1
        optimizer.found_inf = guard.judge_tensor(step, self._step_loss, grad_norm)
        self._step_loss = None
        if step % max(1, int(self.args.logging_steps)) == 0:
            self.flush_guard()

    def flush_guard(self) -> None:
        """Read the guard's pending verdicts (one host sync): log events, roll back, take snapshots."""
        guard = self.guard
        if guard is None:
            return
        before = guard.good_steps
        spikes = guard.flush()
        rolled = False
        for step, kind, loss, norm in spikes:
            rollback_due = guard.record_spike(step, kind, loss, norm)
            self._emit(guard.events[-1])
            if rollback_due and guard.has_snapshot():
                self._rollback(step)
                rolled = True
        every = guard.cfg.snapshot_every
        crossed = before == 0 < guard.good_steps or guard.good_steps // every > before // every
        if crossed and not rolled and (not spikes or spikes[-1][0] < self.state.global_step + 1):
            guard.snapshot(self.model, self.optimizer)

    def _rollback(self, step: int) -> None:
        guard = self.guard
        assert guard is not None
        guard.restore(self.model, self.optimizer)
        guard.lr_scale *= guard.cfg.lr_backoff
        scheduler = self.lr_scheduler
        if hasattr(scheduler, "base_lrs"):
            scheduler.base_lrs = [lr * guard.cfg.lr_backoff for lr in scheduler.base_lrs]
        for group in self.optimizer.param_groups:
            group["lr"] *= guard.cfg.lr_backoff
        guard.recent_spikes.clear()
        event = GuardEvent(step, "rollback", "rolled_back", lr_scale=guard.lr_scale)
        guard.events.append(event)
        self._emit(event)

    def _judge_step(self, grad_norm: Any) -> None:
        guard = self.guard
        assert guard is not None
        step = self.state.global_step + 1
        loss = float(self._step_loss) if self._step_loss is not None else float("nan")
        norm = float(grad_norm) if grad_norm is not None else 0.0
        self._step_loss = None
        kind = guard.judge(step, loss, norm)
        if kind is None:
            if guard.good_steps == 1 or guard.good_steps % guard.cfg.snapshot_every == 0:
                guard.snapshot(self.model, self.optimizer)
            return
        self.model.zero_grad(set_to_none=True)  # the optimizer skips parameters without gradients
        rollback_due = guard.record_spike(step, kind, loss, norm)
        self._emit(guard.events[-1])
        if rollback_due and guard.has_snapshot():
            self._rollback(step)

    def _emit(self, event: GuardEvent) -> None:
        if self.on_event is not None:
            self.on_event({"step": event.step, "event": event.kind, **{k: v for k, v in asdict(event).items()
                                                                       if k not in ("step", "kind")}})

    def final_check(self) -> None:
        """Never end with non-finite weights: restore the last good snapshot if needed."""
        guard = self.guard
        if guard is None:
            return
        self.flush_guard()
        if weights_finite(self.model):
            return
        if guard.has_snapshot():
            guard.restore(self.model, None)
            event = GuardEvent(self.state.global_step, "nan_weights", "restored_snapshot")
            guard.events.append(event)
            self._emit(event)
