"""The last phase of a run: save the best model with its tokenizer, stop ids, config and card, then the summary
and the report, and say what was saved (rank 0 writes; every rank takes part in saving a sharded model)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from glmtune.config.schema import GlmtuneConfig
from glmtune.train.callbacks import JsonlLogCallback
from glmtune.train.guard import SpikeGuard
from glmtune.train.plan import Plan
from glmtune.train.run_context import RunContext

if TYPE_CHECKING:
    from glmtune.train.prepare import PreparedRun

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a finished run produced."""

    output_dir: Path
    steps: int
    first_loss: float | None
    final_loss: float | None
    best_step: int | None
    best_eval_loss: float | None
    guard_events: int
    seconds: float
    plan: Plan


def finish(trainer: Any, plan: Plan, prepared: PreparedRun, step_log: JsonlLogCallback, guard: SpikeGuard | None,
           run: RunContext) -> TrainResult:
    """Save the best model, tokenizer, stop ids, config, card and summary; write the report; say what was saved."""
    config, state = plan.config, trainer.state
    best_step, best_loss = best_checkpoint(state)
    trainer.model.config.use_cache = True  # saved models generate with a KV cache
    trainer.save_model(str(run.out))  # every rank takes part (DeepSpeed/FSDP gather); only rank 0 writes
    seconds = round(time.perf_counter() - run.started, 2)
    if not run.main:
        return TrainResult(run.out, state.global_step, None, None, best_step, best_loss, 0, seconds, plan)
    prepared.tokenizer.save_pretrained(str(run.out))
    save_stop_ids(config.model.name_or_path, prepared.layout.stop_ids, prepared.tokenizer.pad_token_id, run.out)
    (run.out / "config.yaml").write_text(config_yaml(config))
    from glmtune.report.card import write_run_card

    write_run_card(run.out, config.model.name_or_path, config.peft.method)  # not PEFT's empty template
    summary = run_summary(trainer, plan, guard, run, (best_step, best_loss))
    (run.out / "summary.json").write_text(json.dumps(summary, indent=2))
    step_log.write({"step": state.global_step, "event": "end",
                    **{k: summary[k] for k in ("best_step", "best_eval_loss", "stopped_early")}})
    from glmtune.report import write_report

    report = write_report(run.out)
    log.info(summary["guard"])
    log.info(f"report: {report}")
    if best_step is not None:
        log.info(f"best validation loss {best_loss:.4f} at step {best_step}; that adapter is the one saved"
                 + (" (stopped early)" if summary["stopped_early"] else ""))
    what = "adapter" if config.peft.method in ("lora", "ptuning") else "model"
    log.info(f"saved {what} to {run.out} after {summary['steps']} steps; loss {_fmt(summary['first_loss'])} -> "
             f"{_fmt(summary['final_loss'])} in {summary['seconds']:.0f}s")
    return TrainResult(run.out, summary["steps"], summary["first_loss"], summary["final_loss"], best_step,
                       best_loss, len(summary["guard_events"]), summary["seconds"], plan)


def run_summary(trainer: Any, plan: Plan, guard: SpikeGuard | None, run: RunContext,
                best: tuple[int | None, float | None]) -> dict[str, Any]:
    """``summary.json``: steps, first and final loss, the best checkpoint, the guard's account, timing."""
    state, config = trainer.state, plan.config
    best_step, best_loss = best
    losses = [row["loss"] for row in state.log_history if "loss" in row]
    has_eval = trainer.eval_dataset is not None
    micro = config.training.per_device_train_batch_size
    return {
        "steps": state.global_step,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "best_step": best_step,
        "best_eval_loss": best_loss,
        "stopped_early": bool(has_eval and state.global_step < state.max_steps),
        "guard": guard.summary() if guard else "stability guard: off",
        "pad_fraction_unpacked": round(plan.stats.pad_fraction(micro), 4) if plan.stats else 0.0,
        "packing": config.data.packing,
        "guard_events": [vars(e) for e in guard.events] if guard else [],
        "precision": run.precision.reason,
        "seconds": round(time.perf_counter() - run.started, 2),
    }


def save_stop_ids(base: str, stop_ids: list[int], pad_id: int | None, out: Path) -> None:
    """Write ``generation_config.json`` beside the adapter: the base's, with the layout's stop ids."""
    from transformers import GenerationConfig

    try:
        gen = GenerationConfig.from_pretrained(base)
    except (OSError, ValueError):  # a base without one
        gen = GenerationConfig()
    gen.eos_token_id = list(stop_ids)
    if pad_id is not None:
        gen.pad_token_id = pad_id
    gen.save_pretrained(str(out))


def best_checkpoint(state: Any) -> tuple[int | None, float | None]:
    """Step and eval loss of the best checkpoint the Trainer kept, if it tracked one."""
    if not state.best_model_checkpoint:
        return None, None
    step = int(str(state.best_model_checkpoint).rstrip("/").rsplit("-", 1)[-1])
    return step, state.best_metric


def config_yaml(config: GlmtuneConfig) -> str:
    """The resolved config as YAML, as ``config.yaml`` and every checkpoint hold it."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"
