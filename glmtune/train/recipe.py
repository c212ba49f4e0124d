"""The fine-tuning recipe, top to bottom: start the run -> prepare the data -> load the base model -> draft its own
answers -> make the final plan (printed and saved) -> build the guarded Trainer -> train -> finish.

Only rank 0 writes files (``RunContext.main``); every rank runs every phase, so DeepSpeed, FSDP and DDP see the
same data, plan and model.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from glmtune.config.loader import data_sources
from glmtune.config.resolved import ResolvedConfig
from glmtune.config.schema import GlmtuneConfig
from glmtune.experimental.cpu_kernels import apply_cpu_kernels
from glmtune.log import is_main_process
from glmtune.models import load_model, quiet_peft
from glmtune.progress import generation_progress
from glmtune.train.activation_checkpointing import enable_checkpointing
from glmtune.train.arguments import apply_method, training_arguments
from glmtune.train.callbacks import STEPS_FILE, JsonlLogCallback, ProgressBarCallback, StepLog
from glmtune.train.checkpoint_io import clean_partial
from glmtune.train.collate import collator, mask_free
from glmtune.train.dataset import encode_sources, limit_cache, replay_sample, split_validation, to_dataset
from glmtune.train.finish import TrainResult, config_yaml, finish
from glmtune.train.gpu_options import check_gpu_options
from glmtune.train.guard import SpikeGuard
from glmtune.train.plan import ModelFacts, Plan
from glmtune.train.plan_view import print_plan
from glmtune.train.precision import resolve_precision
from glmtune.train.preflight import preflight
from glmtune.train.prepare import PreparedRun, prepare_run
from glmtune.train.run_context import RunContext
from glmtune.train.run_dir import (
    FINGERPRINT,
    check_data_unchanged,
    check_fingerprint,
    find_checkpoint,
    fingerprint,
    prepare_output_dir,
    write_fingerprint,
)
from glmtune.train.stream import check_streaming

log = logging.getLogger(__name__)


@dataclass
class SplitData:
    """The training rows (a list, or a stream), validation rows and the replay-file samples mixed in."""

    train_rows: Any
    val_rows: list[dict]
    picked: list[dict] | None
    n_task: int  # training samples from the task data (0 when streamed: unknown)


@dataclass
class Drafts:
    """Samples drafted with the base model before training, and how many self-replay prompts it answered."""

    extra: list[dict]  # every extra training row: the caller's, self-replay's and identity replay's
    renamed: list[dict]
    replayed: int | None  # None: self-replay did not run


def train(config: GlmtuneConfig, extra_train_samples: list[dict] | None = None, overwrite: bool = False,
          resume: str | None = None, force: bool = False) -> TrainResult:
    """Plan, then fine-tune ``config.model`` on ``config.data``; save the best adapter, tokenizer, plan and logs.

    ``extra_train_samples`` (``{"input_ids", "labels"}`` rows) are appended to the training split, for
    callers that mix in samples that are not chat conversations, such as plain documents.
    """
    run = start_run(config, overwrite, resume, force)
    prepared = prepare_run(config, run.writes)
    split = split_data(prepared, extra_train_samples, run)
    model = load_base_model(prepared.plan.config, run)
    drafts = draft_with_base_model(model, prepared, split, extra_train_samples, run)
    plan = final_plan(config, prepared, model, drafts, run)
    trainer, step_log, guard = build_trainer(plan, prepared, split, drafts, model, run)
    trainer.train(resume_from_checkpoint=run.checkpoint)
    trainer.final_check()
    return finish(trainer, plan, prepared, step_log, guard, run)


def start_run(config: GlmtuneConfig, overwrite: bool, resume: str | None, force: bool) -> RunContext:
    """Check the config, prepare the output folder, find the checkpoint to resume and compare fingerprints."""
    main = is_main_process()  # under torchrun/accelerate only rank 0 writes files
    preflight(config)
    check_gpu_options(config)
    out = Path(config.training.output_dir)
    sources = [s.path for s in data_sources(config.data.train_file)] + [
        p for p in (config.data.eval_file, config.data.replay_file) if p]
    run = RunContext(config, out, main, resolve_precision(config.training), fingerprint(config, sources))
    if main:
        prepare_output_dir(out, overwrite, resume)
    if resume:
        if main:
            clean_partial(out)
        run.checkpoint = find_checkpoint(out, resume)
    if main:
        if resume:  # compare with the run that wrote the checkpoint (it carries its fingerprint)
            recorded = Path(run.checkpoint) if run.checkpoint and (Path(run.checkpoint) / FINGERPRINT).is_file() else out
            check_fingerprint(recorded, run.fingerprint, force)
        write_fingerprint(out, run.fingerprint)
    if run.checkpoint:
        log.info(f"resuming from {run.checkpoint}")
    return run


def split_data(prepared: PreparedRun, extra_train_samples: list[dict] | None, run: RunContext) -> SplitData:
    """Hold out validation samples and draw the replay-file samples; the data files may change after this."""
    config = prepared.plan.config
    data, stream, eval_enc = config.data, prepared.stream, prepared.eval
    if stream and extra_train_samples:
        check_streaming(config, data_sources(data.train_file), "data.streaming", extra_samples=True)
    val_size = 0 if eval_enc else data.val_size
    if stream:
        val_rows = stream.validation(val_size)
        train_rows = stream.training(len(val_rows), config.training.seed)
    else:
        train_rows, val_rows = split_validation(prepared.train.rows, val_size, config.training.seed)
    if eval_enc:
        val_rows = eval_enc.rows
    if val_rows and not eval_enc and run.main:
        (run.out / "validation_split.json").write_text(json.dumps([r["source"] for r in val_rows], indent=1))
        first = "the first " if stream else ""
        log.info(f"validation: {first}{len(val_rows)} samples held out "
                 f"(listed in {run.out / 'validation_split.json'})")
    picked = replay = None
    if data.replay_file and data.replay_ratio > 0:
        replay = encode_sources(data_sources(data.replay_file), prepared.layout, data.combine, data.max_length,
                                run.out / "rejected_replay.jsonl", seed=config.training.seed,
                                truncation=data.truncation, cache=data.cache, cache_dir=data.cache_dir,
                                num_proc=data.num_proc)
        picked = replay_sample(replay.rows, round(data.replay_ratio * len(train_rows)), config.training.seed)
        log.info(f"replay: mixed {len(picked)} samples from {data.replay_file}")
    check_data_unchanged(run.fingerprint)  # all data is encoded now; later changes to the files do not reach this run
    if data.cache and run.main:
        limit_cache(data.cache_dir, data.cache_max_gb, [prepared.train, eval_enc, replay])
    return SplitData(train_rows, val_rows, picked, 0 if stream else len(train_rows))


def load_base_model(config: ResolvedConfig, run: RunContext) -> Any:
    """The base model in training mode; frozen base weights of adapter methods may sit in bf16."""
    data = config.data
    if data.self_replay > 0 and data.self_replay_prompts not in ("auto", "model"):
        from glmtune.train.regularisers.self_replay import read_prompts

        read_prompts(data.self_replay_prompts)  # a bad prompts file fails before the model is loaded
    precision = run.precision
    load_dtype = torch.bfloat16 if precision.bf16 and config.peft.method in ("lora", "ptuning") else precision.dtype
    model = load_model(config.model.name_or_path, dtype=load_dtype, trust_remote_code=config.model.trust_remote_code,
                       attn_implementation=config.model.attn_implementation, quantization=config.model.quantization)
    model.train()
    model.config.use_cache = False  # a KV cache in training also disables packed-sequence masks
    return model


def draft_with_base_model(model: Any, prepared: PreparedRun, split: SplitData,
                          extra_train_samples: list[dict] | None, run: RunContext) -> Drafts:
    """Identity-replay and self-replay samples, answered by the base model before it is adapted."""
    config, stream = prepared.plan.config, prepared.stream
    data = config.data
    extra = list(extra_train_samples or [])
    held_out = {str(r["source"]) for r in split.val_rows}
    renamed: list[dict[str, Any]] = []
    if data.identity_replay and stream:
        log.info("identity replay: off for streamed data (the training questions are not in memory to answer)")
    if data.identity_replay and config.identity.name and not stream:
        from glmtune.train.regularisers.identity_replay import identity_replay_rows

        with generation_progress(model, None, "identity replay: drafting"):
            renamed = identity_replay_rows(
                model, prepared.tokenizer, prepared.layout, prepared.train.conversations, config.identity.name,
                config.identity.author, held_out, data.max_length, data.truncation, run.writes)
    replayed: int | None = None
    if data.self_replay > 0 and not stream:
        from glmtune.train.regularisers.self_replay import self_replay_rows

        names = tuple(n for n in (config.identity.name, config.identity.author) if n)
        # the ratio holds against everything the fine-tune teaches, renamed identity answers included
        rows = self_replay_rows(
            model, prepared.tokenizer, prepared.layout, data.self_replay, prepared.train.conversations,
            split.n_task + len(renamed), config.training.seed, data.max_length, data.truncation, names, run.writes,
            data.self_replay_prompts, data.self_replay_context, held_out, data.self_replay_context_turns)
        replayed = len(rows)
        extra += rows
    return Drafts(extra + renamed, renamed, replayed)


def final_plan(config: GlmtuneConfig, prepared: PreparedRun, model: Any, drafts: Drafts, run: RunContext) -> Plan:
    """The plan with what the loaded model showed; printed and written to ``plan.json`` as the run will use it."""
    from glmtune.train.chunked_loss import supports_chunked_loss

    plan = prepared.plan_with(config, ModelFacts(base_answers=drafts.replayed,
                                                 chunked_loss=supports_chunked_loss(model)))
    print_plan(plan)
    if run.main:
        (run.out / "plan.json").write_text(json.dumps(plan.as_dict(), indent=2, default=str))
    log.info(f"precision: {run.precision.reason}")
    stats, micro = plan.stats, plan.config.training.per_device_train_batch_size
    pad = stats.pad_fraction(micro) if stats else 0.0
    grouped = stats.grouped_pad_fraction(micro) if stats else 0.0
    packing, grouping = plan.config.data.packing, plan.config.data.group_by_length
    log.info(f"padding: {pad:.1%} of tokens would be padding unpacked, {grouped:.1%} length-grouped, 0% packed; "
             + ("packing on" if packing else "length-grouped batches" if grouping else "plain batches"))
    return plan


def build_trainer(plan: Plan, prepared: PreparedRun, split: SplitData, drafts: Drafts, model: Any,
                  run: RunContext) -> tuple[Any, JsonlLogCallback, SpikeGuard | None]:
    """Apply the tuning method to the model and hand it, the data and the guard to a ``GuardedTrainer``."""
    from transformers import EarlyStoppingCallback, PrinterCallback, set_seed

    from glmtune.train.trainer import GuardedTrainer

    config, stream = plan.config, prepared.stream
    if run.main:
        record_data(plan, prepared, split, drafts, run)
    train_dataset = split.train_rows if stream else to_dataset(split.train_rows, split.picked, drafts.extra)
    enable_checkpointing(model, config.training.gradient_checkpointing)
    set_seed(config.training.seed)  # adapter initialisation (LoRA A, prefixes) must be reproducible
    with quiet_peft():
        model = apply_method(model, config)
    apply_cpu_kernels(model, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info(f"model: {plan.params:,} parameters, {trainable:,} trainable ({config.peft.method})")
    jsonl = JsonlLogCallback(run.out / "log.jsonl", append=run.checkpoint is not None or not run.main)
    steps_log = StepLog(run.out / STEPS_FILE, append=run.checkpoint is not None) if run.main else None
    bar = ProgressBarCallback()

    def on_steps(rows: list[dict]) -> None:
        if steps_log is not None:
            steps_log.write(rows)
        bar.show_steps(rows)

    guard = SpikeGuard(config.stability) if config.stability.enabled else None
    has_eval = bool(split.val_rows)
    callbacks: list[Any] = [jsonl, bar]
    if has_eval and config.training.early_stopping:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.training.patience))
    trainer = GuardedTrainer(
        model=model, args=training_arguments(config, run.precision.bf16, run.precision.fp16, has_eval),
        train_dataset=train_dataset, eval_dataset=to_dataset(split.val_rows) if has_eval else None,
        data_collator=collator(prepared.tokenizer, config.data.packing), callbacks=callbacks, guard=guard,
        on_event=jsonl.write if run.main else None, on_steps=on_steps if run.main else None,
        checkpoint_files={"config.yaml": config_yaml(config), FINGERPRINT: json.dumps(run.fingerprint, indent=1)},
        suppress_ids=suppressed_ids(prepared.tokenizer, config),
        suppress_weight=config.identity.unlikelihood, chunked_loss=config.training.chunked_loss,
        anchor_weight=config.training.base_anchor, causal_padding=mask_free(model, config.data.packing),
        spelling=spelled_names(prepared.tokenizer, config), spelling_weight=config.identity.spelling_weight,
    )
    trainer.remove_callback(PrinterCallback)
    return trainer, jsonl, guard


def record_data(plan: Plan, prepared: PreparedRun, split: SplitData, drafts: Drafts, run: RunContext) -> None:
    """Write the run's data facts (``data.json``) for the report."""
    from glmtune.report.data import record_run_data

    stream = prepared.stream
    record_run_data(run.out, plan.config, prepared.train, prepared.eval, {
        "training": len(split.train_rows) if not stream else None, "validation": len(split.val_rows),
        "replay": len(split.picked or []), "self_replay": drafts.replayed, "identity_replay": len(drafts.renamed),
        "other_extra": len(drafts.extra) - (drafts.replayed or 0) - len(drafts.renamed)}, stream is not None)


def suppressed_ids(tokenizer: Any, config: ResolvedConfig) -> list[int]:
    """The old identity's token ids for the unlikelihood term (none when it is off), minus the new identity's."""
    from glmtune.train.regularisers.unlikelihood import old_name_token_ids

    identity = config.identity
    if not identity.name or identity.unlikelihood <= 0:
        return []
    own = {i for text in (identity.name, identity.author or "") if text
           for i in tokenizer(text, add_special_tokens=False)["input_ids"]}
    ids = [i for i in old_name_token_ids(tokenizer) if i not in own]
    pieces = ", ".join(repr(tokenizer.decode([i])) for i in ids)
    log.info(f"unlikelihood: weight {identity.unlikelihood:g} on {len(ids)} old-identity tokens "
             f"({pieces or 'none'})")
    return ids


def spelled_names(tokenizer: Any, config: ResolvedConfig) -> list[tuple[int, ...]]:
    """The token sequences of the identity's multi-token name and author for the spelling weight (none when off)."""
    from glmtune.train.regularisers.spelling import name_token_sequences

    identity = config.identity
    if not identity.name or identity.spelling_weight <= 0:
        return []
    sequences = name_token_sequences(tokenizer, tuple(t for t in (identity.name, identity.author) if t))
    log.info(f"spelling: weight {identity.spelling_weight:g} on the later tokens of {len(sequences)} spellings of "
             f"{identity.name!r}" + (f" and {identity.author!r}" if identity.author else ""))
    return sequences
