"""The loss-spike / NaN guard: skip bad updates, roll back and cool down on repeated spikes.

It judges each optimiser step by its loss and pre-clip gradient norm against running averages of good
steps. A non-finite or exploding step has its gradients dropped, so the optimizer does not move. When
``max_spikes`` happen within ``window`` steps, trainable weights and optimizer state return to the last
good snapshot and the learning rate is multiplied by ``lr_backoff``. Every event is recorded.

``judge`` is the rule on Python floats. ``judge_tensor`` is the same rule on device tensors: it returns the
verdict as a tensor, so a fused optimizer can skip the update on the device (``found_inf``) without a host
sync; the verdicts are read back in one batch by ``flush`` on the logging cadence, where events are recorded
and rollbacks and snapshots happen.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from glmtune.config.schema import StabilityConfig


@dataclass
class GuardEvent:
    """One thing the guard saw and did."""

    step: int
    kind: str  # "nan_loss", "nan_grad", "loss_spike", "grad_spike", "rollback", "final_restore"
    action: str  # "skipped_update", "rolled_back", "restored_snapshot"
    loss: float | None = None
    grad_norm: float | None = None
    ratio: float | None = None  # loss / average for loss spikes, grad norm / average for grad spikes
    lr_scale: float | None = None


@dataclass
class SpikeGuard:
    """State of the guard: running averages, recent spikes, the last good snapshot, and the event log."""

    cfg: StabilityConfig
    loss_avg: float | None = None
    grad_avg: float | None = None
    good_steps: int = 0
    recent_spikes: list[int] = field(default_factory=list)
    events: list[GuardEvent] = field(default_factory=list)
    lr_scale: float = 1.0
    max_ratio: float = 0.0
    _snapshot: dict[str, Any] | None = None
    _state: dict[str, torch.Tensor] | None = None  # device-side running averages for judge_tensor
    _pending: list[torch.Tensor] = field(default_factory=list)  # verdict rows not yet flushed

    def judge(self, step: int, loss: float, grad_norm: float) -> str | None:
        """Return the spike kind for this step, or None when it is fine; update the averages on good steps."""
        if not math.isfinite(loss):
            return "nan_loss"
        if not math.isfinite(grad_norm):
            return "nan_grad"
        judged = self.good_steps >= self.cfg.warmup_steps and self.loss_avg is not None
        if judged and self.loss_avg:
            ratio = loss / self.loss_avg
            self.max_ratio = max(self.max_ratio, ratio)
            if ratio > self.cfg.loss_spike_factor and loss - self.loss_avg > self.cfg.loss_spike_min_delta:
                return "loss_spike"
        if judged and self.grad_avg and grad_norm > self.cfg.grad_spike_factor * self.grad_avg:
            return "grad_spike"
        beta = self.cfg.ema_beta
        self.loss_avg = loss if self.loss_avg is None else beta * self.loss_avg + (1 - beta) * loss
        self.grad_avg = grad_norm if self.grad_avg is None else beta * self.grad_avg + (1 - beta) * grad_norm
        self.good_steps += 1
        return None

    def judge_tensor(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor) -> torch.Tensor:
        """``judge`` on device: a 0-d tensor that is 1.0 when the update must be skipped; no host sync."""
        loss = loss.detach().float().reshape(())
        norm = grad_norm.detach().float().reshape(()).to(loss.device)
        if self._state is None:  # start from the host-side averages: zero on a new run, the checkpoint's on resume
            def scalar(x: float | None) -> torch.Tensor:
                return torch.tensor(float(x or 0.0), dtype=torch.float32, device=loss.device)

            self._state = {"loss_avg": scalar(self.loss_avg), "grad_avg": scalar(self.grad_avg),
                           "good": scalar(self.good_steps)}
        st, cfg = self._state, self.cfg
        has_avg = st["good"] > 0
        judged = has_avg & (st["good"] >= cfg.warmup_steps)
        ratio = torch.where(judged & (st["loss_avg"] != 0), loss / st["loss_avg"], torch.full_like(loss, float("nan")))
        loss_spike = (ratio > cfg.loss_spike_factor) & (loss - st["loss_avg"] > cfg.loss_spike_min_delta)
        grad_spike = judged & (st["grad_avg"] != 0) & (norm > cfg.grad_spike_factor * st["grad_avg"])
        code = torch.where(~torch.isfinite(loss), 1, torch.where(~torch.isfinite(norm), 2, torch.where(
            loss_spike, 3, torch.where(grad_spike, 4, 0)))).float()
        good = code == 0
        beta = cfg.ema_beta
        st["loss_avg"] = torch.where(good, torch.where(has_avg, beta * st["loss_avg"] + (1 - beta) * loss, loss),
                                     st["loss_avg"])
        st["grad_avg"] = torch.where(good, torch.where(has_avg, beta * st["grad_avg"] + (1 - beta) * norm, norm),
                                     st["grad_avg"])
        grad_ratio = torch.where(st["grad_avg"] != 0, norm / st["grad_avg"], torch.full_like(norm, float("nan")))
        st["good"] = st["good"] + good.float()
        self._pending.append(torch.stack([torch.full_like(loss, step), code, loss, norm, ratio, grad_ratio]))
        return (~good).float()

    def flush(self) -> list[tuple[int, str, float, float, float | None]]:
        """Read the pending device verdicts in one sync; return the bad steps as (step, kind, loss, grad norm,
        ratio to the average the step was judged against)."""
        if not self._pending:
            return []
        rows = torch.stack(self._pending).tolist()
        self._pending = []
        bad = []
        for step, code, loss, norm, ratio, grad_ratio in rows:
            if code not in (1, 2) and math.isfinite(ratio):
                self.max_ratio = max(self.max_ratio, ratio)
            if code == 0:
                self.good_steps += 1
            else:
                judged = grad_ratio if code == 4 else ratio
                bad.append((int(step), KINDS[int(code)], loss, norm, judged if math.isfinite(judged) else None))
        if self._state is not None and self.good_steps:
            self.loss_avg, self.grad_avg = float(self._state["loss_avg"]), float(self._state["grad_avg"])
        return bad

    def record_spike(self, step: int, kind: str, loss: float, grad_norm: float, ratio: float | None = None) -> bool:
        """Log a skipped update (once per step); return True when spikes are frequent enough to roll back.

        ``ratio`` is the step's value over the running average it was judged against; without it, it is
        computed from the current averages (exact on the per-step path, where spikes leave them unchanged).
        """
        if any(e.step == step and e.action == "skipped_update" for e in self.events[-self.cfg.window:]):
            return False  # already recorded (a verdict read back twice); one event per spike
        if ratio is None:
            ratio = _ratio(grad_norm, self.grad_avg) if kind == "grad_spike" else _ratio(loss, self.loss_avg)
        self.events.append(GuardEvent(step, kind, "skipped_update", _num(loss), _num(grad_norm), ratio))
        self.recent_spikes = [s for s in self.recent_spikes if step - s < self.cfg.window] + [step]
        return len(self.recent_spikes) >= self.cfg.max_spikes

    def snapshot(self, model: torch.nn.Module, optimizer: Any) -> None:
        """Keep a CPU copy of the trainable weights and the optimizer state."""
        self._snapshot = {
            "params": {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad},
            "optimizer": copy.deepcopy(_to_cpu(optimizer.state_dict())),
        }

    def has_snapshot(self) -> bool:
        """Whether a good state was captured."""
        return self._snapshot is not None

    def restore(self, model: torch.nn.Module, optimizer: Any | None) -> None:
        """Put the snapshot's weights (and optimizer state) back."""
        assert self._snapshot is not None
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in self._snapshot["params"].items():
                params[name].copy_(value.to(params[name].device))
        if optimizer is not None:
            optimizer.load_state_dict(copy.deepcopy(self._snapshot["optimizer"]))

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to judge, roll back and report exactly as this one would."""
        return {"loss_avg": self.loss_avg, "grad_avg": self.grad_avg, "good_steps": self.good_steps,
                "recent_spikes": list(self.recent_spikes), "events": [asdict(e) for e in self.events],
                "lr_scale": self.lr_scale, "max_ratio": self.max_ratio, "snapshot": self._snapshot}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.loss_avg, self.grad_avg = state["loss_avg"], state["grad_avg"]
        self.good_steps, self.recent_spikes = state["good_steps"], list(state["recent_spikes"])
        self.events = [GuardEvent(**e) for e in state["events"]]
        self.lr_scale, self.max_ratio, self._snapshot = state["lr_scale"], state["max_ratio"], state["snapshot"]
        self._state = None  # rebuilt from the restored averages on the next device check

    def summary(self) -> str:
        """One line: what the guard did over the run."""
        kinds: dict[str, int] = {}
        for ev in self.events:
            kinds[ev.kind] = kinds.get(ev.kind, 0) + 1
        if not kinds:
            return f"stability guard: no events; max loss/average ratio {self.max_ratio:.2f}"
        parts = ", ".join(f"{k} x{v}" for k, v in sorted(kinds.items()))
        return f"stability guard: {parts}; final lr scale {self.lr_scale:g}; max loss/average ratio {self.max_ratio:.2f}"


KINDS = {1: "nan_loss", 2: "nan_grad", 3: "loss_spike", 4: "grad_spike"}


def _ratio(value: float, average: float | None) -> float | None:
    return value / average if average and math.isfinite(value) else None


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


def weights_finite(model: torch.nn.Module) -> bool:
    """True when every trainable weight is finite."""
    return all(torch.isfinite(p).all().item() for p in model.parameters() if p.requires_grad)
