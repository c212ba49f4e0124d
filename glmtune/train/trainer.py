"""transformers' Trainer with the stability guard wired between backward and the optimizer step.

It also saves checkpoints crash-safely (see :mod:`glmtune.train.checkpoint_io`): ``_save_checkpoint`` runs
transformers' own writers (model, optimizer, scheduler, scaler, RNG, trainer state) into a staging folder,
adds the guard state, the resolved config and the data fingerprint, and publishes the folder atomically.

With a fused AdamW (transformers' default optimizer on torch >= 2.8) the guard costs no host sync per step:
its verdict is a device tensor handed to the optimizer as ``found_inf``, which skips the update on the device,
and the verdicts are read back in one batch every ``logging_steps``, where events are logged and rollbacks
and snapshots happen. Any other optimizer gets the per-step check (one host sync per optimiser step).

Every optimiser step's loss, pre-clip gradient norm and learning rate are kept as device tensors and read back
on the same cadence (``readback_every``: every step on runs of at most ``SMALL_RUN_STEPS`` steps, else every
``logging_steps``), then handed to ``on_steps``: the per-step curves of the report and the progress bar.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import SaveStrategy

from glmtune.train import checkpoint_io as ckpt
from glmtune.train.chunked_loss import chunked_lm_loss, output_head
from glmtune.train.guard import GuardEvent, SpikeGuard, weights_finite
from glmtune.train.regularisers.anchor import anchor_loss
from glmtune.train.regularisers.spelling import later_name_positions, spelling_loss
from glmtune.train.regularisers.unlikelihood import unlikelihood_loss

SMALL_RUN_STEPS = 1000  # runs this short read every step back (one host sync per step) for curves and the bar


def readback_every(max_steps: int, logging_steps: float) -> int:
    """Steps between read-backs of per-step values and guard verdicts: 1 on small runs, else ``logging_steps``."""
    if 0 < max_steps <= SMALL_RUN_STEPS:
        return 1
    return max(1, int(logging_steps))


class GuardedTrainer(Trainer):
    """A Trainer whose every optimiser step is judged by a ``SpikeGuard`` (when one is given)."""

    def __init__(self, *args: Any, guard: SpikeGuard | None = None,
                 on_event: Callable[[dict], None] | None = None,
                 on_steps: Callable[[list[dict]], None] | None = None,
                 checkpoint_files: dict[str, str] | None = None, suppress_ids: list[int] | None = None,
                 suppress_weight: float = 0.0, chunked_loss: bool = False, anchor_weight: float = 0.0,
                 causal_padding: bool = False, spelling: list[tuple[int, ...]] | None = None,
                 spelling_weight: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # right-padded batches (glmtune.train.collate): the padding mask is counted, then left out of the forward
        self.causal_padding = causal_padding
        self.anchor_weight = anchor_weight  # glmtune.train.regularisers.anchor: KL to the adapter-free base model
        self.chunked_loss = chunked_loss  # glmtune.train.chunked_loss: no full logits tensor
        # unlikelihood on the old identity's tokens (glmtune.train.regularisers.unlikelihood); off when weight or ids are empty
        self.suppress = torch.tensor(suppress_ids or [], dtype=torch.long) if suppress_weight > 0 else None
        self.suppress_weight = suppress_weight
        # glmtune.train.regularisers.spelling: the later tokens of a multi-token identity name count more
        self.spelling = list(spelling or []) if spelling_weight > 0 else []
        self.spelling_weight = spelling_weight
        self.checkpoint_files = dict(checkpoint_files or {})  # name -> text written into every checkpoint
        if guard is not None and (self.is_deepspeed_enabled or self.is_fsdp_enabled):
            guard = None  # the engine owns clipping and the optimizer step; the guard cannot skip inside it
        self.guard = guard
        self.on_event = on_event
        self.on_steps = on_steps  # receives [{"step", "loss", "grad_norm", "learning_rate"}] at each read-back
        self._step_loss: torch.Tensor | None = None
        self._steps_pending: list[tuple[int, Any, Any, float | None]] = []

    def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """The language-model loss (chunked when on), plus the unlikelihood and anchor terms while training when on."""
        if self.causal_padding:
            inputs = {k: v for k, v in inputs.items() if k != "attention_mask"}
        labels = inputs.get("labels")
        training = labels is not None and model.training
        suppress = self.suppress is not None and len(self.suppress) > 0 and training
        anchor = self.anchor_weight > 0 and training
        spell = bool(self.spelling) and training
        if labels is None or not (self.chunked_loss or suppress or anchor or spell):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        features = {k: v for k, v in inputs.items() if k != "labels"}
        if not self.chunked_loss:
            loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
            if suppress:
                banned = self.suppress.to(labels.device)
                loss = loss + self.suppress_weight * unlikelihood_loss(outputs.logits, labels, banned,
                                                                       num_items_in_batch)
            if anchor:
                base = self._base_outputs(model, features).logits
                loss = loss + self.anchor_weight * anchor_loss(outputs.logits, base, labels, num_items_in_batch)
            if spell:
                loss = loss + self._spelling_term(outputs.logits[:, :-1], None, labels, num_items_in_batch)
            return (loss, outputs) if return_outputs else loss
        base_hidden = (self._base_outputs(model, features, output_hidden_states=True, logits_to_keep=1)
                       .hidden_states[-1] if anchor else None)
        outputs = model(**features, output_hidden_states=True, logits_to_keep=1)
        # normalised as transformers would: over the accumulated batch when the model takes num_items_in_batch
        items = num_items_in_batch if self.model_accepts_loss_kwargs else None
        hidden, head = outputs.hidden_states[-1], output_head(model)
        parts = chunked_lm_loss(hidden, labels, head, items, self.suppress if suppress else None,
                                self.args.label_smoothing_factor, base_hidden=base_hidden)
        outputs.hidden_states = None
        loss = parts.ce
        if spell:
            loss = loss + self._spelling_term(hidden[:, :-1], head, labels, items)
        if suppress:
            loss = loss + self.suppress_weight * parts.unlikelihood
        if anchor:
            loss = loss + self.anchor_weight * parts.anchor
        if self.args.average_tokens_across_devices and items is not None:
            # what Trainer.compute_loss does for a loss normalised over the whole accumulated batch
            scale = self.accelerator.num_processes // self.get_tp_size()
            loss = loss * (scale if self.args.n_gpu <= 1 else self.args.n_gpu)
        return (loss, outputs) if return_outputs else loss

    def _spelling_term(self, rows: torch.Tensor, head: Any, labels: torch.Tensor, num_items: Any) -> torch.Tensor:
        """The weighted extra cross-entropy of the identity name's later tokens; ``rows`` are logits, or hidden
        states when ``head`` is given (the chunked loss)."""
        targets = labels[:, 1:]
        chosen = later_name_positions(targets, self.spelling)
        picked = rows[chosen]
        logits = head(picked) if head is not None else picked
        term = spelling_loss(logits, targets[chosen], (targets != -100).sum(), num_items)
        return self.spelling_weight * term

    def _base_outputs(self, model: Any, features: dict[str, Any], **kwargs: Any) -> Any:
        """The base model's outputs on ``features``: the same network with its adapter off, without gradients."""
        adapted = self.accelerator.unwrap_model(model)
        with torch.no_grad(), adapted.disable_adapter():
            return model(**features, **kwargs)

    def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None) -> torch.Tensor:
        """Run the usual step and remember its (accumulation-scaled) loss for the guard."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        self._step_loss = loss.detach() if self._step_loss is None else self._step_loss + loss.detach()
        return loss

    def _get_grad_norm(self, model: Any, grad_norm: Any = None) -> Any:
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        step = self.state.global_step + 1
        self._steps_pending.append((step, self._step_loss, grad_norm, self._current_lr()))
        if self.guard is not None:
            if not self.guard.has_snapshot():  # the weights before the first judged update: always a rollback target
                self.guard.snapshot(self.model, self.optimizer)
            fused = self._fused_optimizer()
            if fused is not None and isinstance(grad_norm, torch.Tensor) and self._step_loss is not None:
                self._judge_on_device(fused, grad_norm)
            else:
                self._judge_step(grad_norm)
        self._step_loss = None
        if step % readback_every(self.state.max_steps, self.args.logging_steps) == 0:
            self.flush_guard()
            self.flush_steps()
        return grad_norm

    def _maybe_log_save_evaluate(self, tr_loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        logged = self._globalstep_last_logged
        super()._maybe_log_save_evaluate(tr_loss, *args, **kwargs)
        if self._globalstep_last_logged != logged:
            # transformers resets the window with ``tr_loss -= tr_loss``, which keeps a NaN step's NaN in every
            # later logged loss; the guard skipped that step, so the next window starts from zero again
            tr_loss.zero_()

    def _current_lr(self) -> float | None:
        """The learning rate this optimiser step uses (the scheduler steps after the optimizer)."""
        try:
            return float(self._get_learning_rate())
        except (AttributeError, IndexError, RuntimeError, TypeError):
            return None

    def flush_steps(self) -> None:
        """Read the pending per-step losses and gradient norms back (one host sync; the loss averaged over
        processes like the Trainer's logged loss) and hand them to ``on_steps``. Every rank calls it together."""
        pending, self._steps_pending = self._steps_pending, []
        if not pending:
            return
        device = self.args.device
        losses = torch.stack([_scalar(loss, device) for _, loss, _, _ in pending])
        if self.args.world_size > 1:
            losses = self.accelerator.reduce(losses, reduction="mean")
        norms = torch.stack([_scalar(norm, device) for _, _, norm, _ in pending])
        if self.on_steps is None:
            return
        values = torch.stack([losses, norms]).tolist()
        self.on_steps([{"step": step, "loss": loss, "grad_norm": norm if raw is not None else None,
                        "learning_rate": lr}
                       for (step, _, raw, lr), loss, norm in zip(pending, values[0], values[1])])

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

    def flush_guard(self) -> None:
        """Read the guard's pending verdicts (one host sync): log events, roll back, take snapshots."""
        guard = self.guard
        if guard is None:
            return
        before = guard.good_steps
        spikes = guard.flush()
        rolled = False
        for step, kind, loss, norm, ratio in spikes:
            rollback_due = self._record(step, kind, loss, norm, ratio)
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
        self.model.zero_grad(set_to_none=True)  # gradients of the abandoned weights must not reach the restored ones
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
        kind = guard.judge(step, loss, norm)
        if kind is None:
            if guard.good_steps % guard.cfg.snapshot_every == 0:
                guard.snapshot(self.model, self.optimizer)
            return
        self.model.zero_grad(set_to_none=True)  # the optimizer skips parameters without gradients
        if self._record(step, kind, loss, norm, None) and guard.has_snapshot():
            self._rollback(step)

    def _record(self, step: int, kind: str, loss: float, norm: float, ratio: float | None) -> bool:
        """Record one spike with the guard and log it (once); True when a rollback is due."""
        guard = self.guard
        assert guard is not None
        count = len(guard.events)
        rollback_due = guard.record_spike(step, kind, loss, norm, ratio)
        if len(guard.events) > count:
            self._emit(guard.events[-1])
        return rollback_due

    def _emit(self, event: GuardEvent) -> None:
        if self.on_event is not None:
            self.on_event({"step": event.step, "event": event.kind, **{k: v for k, v in asdict(event).items()
                                                                       if k not in ("step", "kind")}})

    def final_check(self) -> None:
        """Never end with non-finite weights: restore the last good snapshot if needed."""
        self.flush_steps()
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

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        """Write the checkpoint into a staging folder with transformers' writers, then publish it atomically."""
        run_dir = Path(self._get_output_dir(trial=trial))
        step = self.state.global_step
        final, staging = run_dir / f"{ckpt.PREFIX}{step}", run_dir / f"{ckpt.STAGING_PREFIX}{step}"
        previous = ckpt.latest_complete(run_dir) if self.args.should_save else None
        if self.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        try:
            self._write_checkpoint(staging, final, trial)
            self.accelerator.wait_for_everyone()
            if self.args.should_save:
                ckpt.write_manifest(staging, step, self._manifest_info())
                ckpt.publish(staging, final)
        except Exception as exc:
            error = ckpt.save_error(exc, final, previous)  # before the cleanup frees the space again
            if self.args.should_save:
                shutil.rmtree(staging, ignore_errors=True)
            if error is exc:
                raise
            raise error from exc
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            ckpt.rotate(run_dir, self.args.save_total_limit, self.state.best_model_checkpoint)

    def _write_checkpoint(self, staging: Path, final: Path, trial: Any) -> None:
        """What ``Trainer._save_checkpoint`` writes, into ``staging``, plus the guard state and run files."""
        if self.hp_search_backend is None and trial is None:
            self.store_flos()
        self.save_model(str(staging), _internal_call=True)
        best_step = self.state.best_global_step
        if self.args.save_strategy in (SaveStrategy.STEPS, SaveStrategy.EPOCH, SaveStrategy.BEST) and best_step:
            best = final.with_name(f"{ckpt.PREFIX}{best_step}")
            if best_step == self.state.global_step or best.exists():
                self.state.best_model_checkpoint = str(best)
        if not self.args.save_only_model:
            self._save_optimizer_and_scheduler(str(staging))
            self._save_scaler(str(staging))
            self._save_rng_state(str(staging))
        if not self.args.should_save:
            return
        ckpt.fault_pause(self.state.global_step)
        for cb in [c for c in self.callback_handler.callbacks + [self.control] if isinstance(c, ExportableState)]:
            name = cb.__class__.__name__
            if isinstance(self.state.stateful_callbacks[name], list):
                self.state.stateful_callbacks[name].append(cb.state())
            else:
                self.state.stateful_callbacks[name] = cb.state()
        self.state.save_to_json(str(staging / "trainer_state.json"))
        if self.guard is not None:
            torch.save(self.guard.state_dict(), staging / ckpt.GUARD_STATE)
        for name, text in self.checkpoint_files.items():
            (staging / name).write_text(text, encoding="utf-8")

    def _manifest_info(self) -> dict[str, Any]:
        args = self.args
        return {"epoch": self.state.epoch, "data_order": {
            "seed": args.data_seed if args.data_seed is not None else args.seed,
            "epoch": math.floor(self.state.epoch or 0), "sampling": str(args.train_sampling_strategy),
            "note": "each epoch's order is drawn from seed + epoch; resuming skips the batches already seen"},
            "guard_state": self.guard is not None}

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None or self.guard is None:
            return
        path = Path(checkpoint) / ckpt.GUARD_STATE
        if path.is_file():
            self.guard.load_state_dict(torch.load(path, weights_only=True))


def _scalar(value: Any, device: Any) -> torch.Tensor:
    """A 0-d float tensor on ``device`` from a tensor, a number, or None (NaN)."""
    if isinstance(value, torch.Tensor):
        return value.detach().float().reshape(()).to(device)
    return torch.tensor(float("nan") if value is None else float(value), device=device)
