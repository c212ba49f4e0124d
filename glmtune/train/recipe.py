"""The fine-tuning recipe, top to bottom: config -> data -> plan -> model -> guarded Trainer -> best adapter."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from glmtune.config.loader import ConfigError, data_sources
from glmtune.config.schema import GlmtuneConfig
from glmtune.data.train_clean import CleanSettings
from glmtune.layout import get_layout
from glmtune.layout.glm4 import GLM4_DEFAULT_SYSTEM, rewrite_tool_prompt
from glmtune.layout.verify import verify_layout
from glmtune.models import load_model, load_tokenizer, quiet_peft
from glmtune.progress import generation_progress
from glmtune.train.callbacks import STEPS_FILE, JsonlLogCallback, ProgressBarCallback, StepLog
from glmtune.train.checkpoint import clean_partial
from glmtune.train.checkpointing import enable_checkpointing
from glmtune.train.collate import collator, mask_free
from glmtune.train.dataset import (
    Encoded,
    encode_sources,
    limit_cache,
    replay_sample,
    split_validation,
    to_dataset,
)
from glmtune.train.fusions import apply_fusions
from glmtune.train.guard import SpikeGuard
from glmtune.train.hygiene import (
    FINGERPRINT,
    check_data_unchanged,
    check_fingerprint,
    find_checkpoint,
    fingerprint,
    prepare_output_dir,
    write_fingerprint,
)
from glmtune.train.plan import DataStats, Plan, PlanItem, make_plan, model_shape
from glmtune.train.plan_view import print_plan
from glmtune.train.precision import resolve_precision
from glmtune.train.preflight import preflight
from glmtune.train.stream import StreamedData, check_streaming, resolve_streaming


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


def apply_method(model: Any, config: GlmtuneConfig) -> Any:
    """Make the parameters of the configured tuning method (already planned) trainable."""
    from peft import LoraConfig, PrefixTuningConfig, get_peft_model

    method = config.peft.method
    if method == "lora":
        lora = config.peft.lora
        return get_peft_model(model, LoraConfig(
            task_type="CAUSAL_LM", r=int(lora.r), lora_alpha=int(lora.alpha), lora_dropout=float(lora.dropout),
            target_modules=lora.target_modules,
        ))
    if method == "ptuning":
        return get_peft_model(model, PrefixTuningConfig(
            task_type="CAUSAL_LM", num_virtual_tokens=config.peft.ptuning.num_virtual_tokens,
        ))
    if method == "freeze":
        layers = model.model.layers
        keep = min(config.peft.freeze.trainable_layers, len(layers))
        for p in model.parameters():
            p.requires_grad_(False)
        for layer in layers[len(layers) - keep:]:
            for p in layer.parameters():
                p.requires_grad_(True)
        for p in model.model.norm.parameters():
            p.requires_grad_(True)
    return model


def training_arguments(config: GlmtuneConfig, bf16: bool, fp16: bool, has_eval: bool) -> Any:
    """Map the planned training section onto transformers' ``TrainingArguments``."""
    import torch
    from transformers import TrainingArguments

    t = config.training
    stop_early = has_eval and t.early_stopping
    return TrainingArguments(
        output_dir=t.output_dir,
        learning_rate=float(t.learning_rate),
        num_train_epochs=float(t.num_train_epochs) if t.num_train_epochs != "auto" else 3.0,
        max_steps=t.max_steps,
        per_device_train_batch_size=int(t.per_device_train_batch_size),
        per_device_eval_batch_size=t.per_device_eval_batch_size,
        gradient_accumulation_steps=int(t.gradient_accumulation_steps),
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=float(t.warmup_ratio),  # a float in [0, 1) is a ratio of total steps
        max_grad_norm=t.max_grad_norm,
        weight_decay=float(t.weight_decay),
        neftune_noise_alpha=float(t.neftune_noise_alpha) or None,
        seed=t.seed,
        data_seed=t.seed,
        bf16=bf16,
        fp16=fp16,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,  # a NaN step is logged as NaN, not hidden behind an average
        save_strategy="steps",
        save_steps=int(t.eval_steps) if stop_early else t.save_steps,
        save_total_limit=t.save_total_limit,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=int(t.eval_steps) if has_eval else None,
        load_best_model_at_end=stop_early,
        metric_for_best_model="eval_loss" if stop_early else None,
        greater_is_better=False if stop_early else None,
        label_smoothing_factor=t.label_smoothing,
        # checkpointing is turned on on the model itself (train/checkpointing.py): its selective policy is a
        # callable that TrainingArguments could not serialise
        dataloader_num_workers=(workers := dataloader_workers(t.dataloader_num_workers)),
        dataloader_persistent_workers=workers > 0,  # no re-spawn at every epoch and evaluation
        report_to=t.report_to or "none",
        deepspeed=t.deepspeed,
        fsdp=t.fsdp or "",
        torch_compile=t.torch_compile,
        disable_tqdm=True,
        # packed rows carry no padding (and no attention mask to count it by)
        include_num_input_tokens_seen="all" if config.data.packing is True else "non_padding",
        train_sampling_strategy="group_by_length" if config.data.group_by_length is True else "random",
        remove_unused_columns=False,
        use_cpu=not torch.cuda.is_available(),
    )


def dataloader_workers(setting: int | str) -> int:
    """DataLoader workers: the setting, or for auto 0 without a GPU and min(4, cores per process - 1) with GPUs."""
    import torch

    if setting != "auto":
        return int(setting)
    if not torch.cuda.is_available():
        return 0
    per_process = (os.cpu_count() or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(0, min(4, per_process - 1))


@dataclass
class PreparedRun:
    """Everything known before the model loads: tokenizer, layout, encoded data and the plan."""

    tokenizer: Any
    layout: Any
    train: Encoded
    eval: Encoded | None
    plan: Plan
    stream: StreamedData | None = None


def prepare_run(config: GlmtuneConfig, out: Path | None, say: Any = print) -> PreparedRun:
    """Load the tokenizer, encode the data (writing rejects into ``out`` when given) and make the plan."""
    tokenizer = load_tokenizer(config.model.name_or_path, config.model.trust_remote_code)
    identity = config.identity
    rewrite = identity.rewrite_tool_prompt
    if rewrite == "auto":
        rewrite = bool(identity.name) and GLM4_DEFAULT_SYSTEM in str(tokenizer.chat_template or "")
    if rewrite:
        if not identity.name:
            raise ConfigError("identity.rewrite_tool_prompt needs identity.name")
        rewrite_tool_prompt(tokenizer, identity.name, identity.author)
        say(f"identity: the tool system prompt now introduces {identity.name} (saved with the adapter's tokenizer)")
    layout = get_layout(tokenizer)
    data = config.data
    say(f"layout: {layout.name}; stop ids {layout.stop_ids}")
    values = {k: v for k, v in (("name", config.identity.name), ("author", config.identity.author)) if v}
    common = {"layout": layout, "combine": data.combine, "max_length": data.max_length, "values": values,
              "seed": config.training.seed, "say": say, "truncation": data.truncation, "cache": data.cache,
              "cache_dir": data.cache_dir, "num_proc": data.num_proc,
              "clean": CleanSettings(data.repair, identity.name, identity.author, identity.conflicts == "drop")}
    sources = data_sources(data.train_file)
    streaming, why = resolve_streaming(data.streaming, sources)
    stream = None
    if streaming:
        check_streaming(config, sources, why)
        say(f"streaming: on ({why}); samples are read and tokenised while training")
        stream = StreamedData(sources, layout, data.combine, data.max_length, data.truncation, values,
                              out / "rejected.jsonl" if out else None)
        train_enc, stats = stream.probe(data.max_reject_ratio, say)
    else:
        train_enc = encode_sources(sources, rejects_path=out / "rejected.jsonl" if out else None,
                                   max_reject_ratio=data.max_reject_ratio, **common)
        lengths = train_enc.lengths
        stats = DataStats(len(train_enc.rows), train_enc.result.trained_tokens, sum(lengths), max(lengths), lengths)
    eval_enc = None
    if data.eval_file:
        eval_enc = encode_sources(data_sources(data.eval_file), rejects_path=out / "rejected_eval.jsonl" if out else None,
                                  **common)
    checked = verify_layout(layout, tokenizer, [c.messages for c in train_enc.conversations.head(16)], data.combine)
    say(f"layout verified on {checked} conversations: ids equal the chat template, every trained span is a "
        "reply ending in a stop token")
    if identity.name:
        warn_identity(train_enc.conversations, identity.name, identity.author, bool(rewrite), say)
    shape = model_shape(config.model.name_or_path, config.model.trust_remote_code)
    memory = torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else 0
    plan = make_plan(config, stats, shape.params, has_eval_file=eval_enc is not None, shape=shape,
                     device_memory=memory, bf16=resolve_precision(config.training).bf16)
    plan.config.data.streaming = streaming
    plan.items.append(PlanItem("data.streaming", streaming, why, "config" if data.streaming != "auto" else "auto"))
    return PreparedRun(tokenizer, layout, train_enc, eval_enc, plan, stream)


def suppressed_ids(tokenizer: Any, config: GlmtuneConfig, say: Any) -> list[int]:
    """The old identity's token ids for the unlikelihood term (none when it is off), minus the new identity's."""
    from glmtune.train.unlikelihood import old_name_token_ids

    identity = config.identity
    if not identity.name or float(identity.unlikelihood) <= 0:
        return []
    own = {i for text in (identity.name, identity.author or "") if text
           for i in tokenizer(text, add_special_tokens=False)["input_ids"]}
    ids = [i for i in old_name_token_ids(tokenizer) if i not in own]
    pieces = ", ".join(repr(tokenizer.decode([i])) for i in ids)
    say(f"unlikelihood: weight {float(identity.unlikelihood):g} on {len(ids)} old-identity tokens ({pieces or 'none'})")
    return ids


def anchor_weight(plan: Any, replayed: int | None, say: Any) -> float:
    """``training.base_anchor`` as planned, unless the planner chose it and self-replay found that the base model
    answers no prompt (an untrained model, whose flat distributions there is no point keeping)."""
    item = next((i for i in plan.items if i.key == "training.base_anchor"), None)
    weight = float(plan.config.training.base_anchor)
    if weight > 0 and replayed == 0 and item is not None and item.source == "auto":
        say("base anchor: off (the base model finished no self-replay reply: not a chat model worth anchoring to)")
        return 0.0
    return weight


def chunked_loss_on(model: Any, config: GlmtuneConfig, say: Any) -> bool:
    """``training.chunked_loss`` as planned, unless this model cannot give its loss from hidden states."""
    from glmtune.train.chunked_loss import supports_chunked_loss

    if config.training.chunked_loss is not True:
        return False
    ok, why = supports_chunked_loss(model)
    if not ok:
        say(f"chunked loss: off ({why}); the loss uses the full logits")
    return ok


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


def warn_identity(convs: list[Any], name: str, author: str | None, rewritten: bool, say: Any) -> None:
    """Warn, with counts and samples, when the data asserts an identity other than the declared one."""
    from glmtune.data.identity_guard import format_warning, scan_identity

    scan = scan_identity(convs, name, author)
    if rewritten:
        scan.tool_prompt, scan.tool_prompt_samples = 0, []
    warning = format_warning(scan)
    if warning:
        say(f"identity warning: {warning}")
        if scan.tool_prompt and not rewritten:
            say("  set identity.rewrite_tool_prompt: true to render the tool prompt with your identity")


def train(config: GlmtuneConfig, say: Any = print, extra_train_samples: list[dict] | None = None,
          overwrite: bool = False, resume: str | None = None, force: bool = False) -> TrainResult:
    """Plan, then fine-tune ``config.model`` on ``config.data``; save the best adapter, tokenizer, plan and logs.

    ``extra_train_samples`` (``{"input_ids", "labels"}`` rows) are appended to the training split, for
    callers that mix in samples that are not chat conversations, such as plain documents.
    """
    from transformers import EarlyStoppingCallback, PrinterCallback

    started = time.perf_counter()
    main = int(os.environ.get("RANK", "0")) == 0  # under torchrun/accelerate only rank 0 writes files
    if not main:
        say = _silent
    preflight(config)
    precision = resolve_precision(config.training)
    out = Path(config.training.output_dir)
    sources = [s.path for s in data_sources(config.data.train_file)] + [
        p for p in (config.data.eval_file, config.data.replay_file) if p]
    current = fingerprint(config, sources)
    checkpoint = None
    if main:
        prepare_output_dir(out, overwrite, resume)
    if resume:
        if main:
            clean_partial(out, say)
        checkpoint = find_checkpoint(out, resume, say)
    if main:
        if resume:  # compare with the run that wrote the checkpoint (it carries its fingerprint)
            recorded = Path(checkpoint) if checkpoint and (Path(checkpoint) / FINGERPRINT).is_file() else out
            check_fingerprint(recorded, current, force)
        write_fingerprint(out, current)
    if checkpoint:
        say(f"resuming from {checkpoint}")

    prepared = prepare_run(config, out if main else None, say)
    tokenizer, layout, train_enc, eval_enc, plan = (prepared.tokenizer, prepared.layout, prepared.train,
                                                    prepared.eval, prepared.plan)
    config, data, params = plan.config, plan.config.data, plan.params
    print_plan(plan, say)
    if main:
        (out / "plan.json").write_text(json.dumps(plan.as_dict(), indent=2, default=str))
    say(f"precision: {precision.reason}")

    stream = prepared.stream
    if stream and extra_train_samples:
        check_streaming(config, data_sources(data.train_file), "data.streaming", extra_samples=True)
    val_size = 0 if eval_enc else int(data.val_size)
    if stream:
        val_rows = stream.validation(val_size)
        train_rows = stream.training(len(val_rows), config.training.seed)
    else:
        train_rows, val_rows = split_validation(train_enc.rows, val_size, config.training.seed)
    if eval_enc:
        val_rows = eval_enc.rows
    n_task = 0 if stream else len(train_rows)
    if val_rows and not eval_enc and main:
        (out / "validation_split.json").write_text(json.dumps([r["source"] for r in val_rows], indent=1))
        first = "the first " if stream else ""
        say(f"validation: {first}{len(val_rows)} samples held out (listed in {out / 'validation_split.json'})")
    picked = replay = None
    if data.replay_file and float(data.replay_ratio) > 0:
        replay = encode_sources(data_sources(data.replay_file), layout, data.combine, data.max_length,
                                out / "rejected_replay.jsonl", seed=config.training.seed, say=say,
                                truncation=data.truncation, cache=data.cache, cache_dir=data.cache_dir,
                                num_proc=data.num_proc)
        picked = replay_sample(replay.rows, round(float(data.replay_ratio) * len(train_rows)), config.training.seed)
        say(f"replay: mixed {len(picked)} samples from {data.replay_file}")
    check_data_unchanged(current)  # all data is encoded now; later changes to the files do not reach this run
    if data.cache and main:
        limit_cache(data.cache_dir, data.cache_max_gb, [train_enc, eval_enc, replay], say)

    if float(data.self_replay) > 0 and data.self_replay_prompts not in ("auto", "model"):
        from glmtune.train.self_replay import read_prompts

        read_prompts(data.self_replay_prompts)  # a bad prompts file fails before the model is loaded
    # Frozen base weights of adapter methods can sit in bf16; trained weights keep fp32 masters.
    load_dtype = torch.bfloat16 if precision.bf16 and config.peft.method in ("lora", "ptuning") else precision.dtype
    model = load_model(config.model.name_or_path, dtype=load_dtype,
                       trust_remote_code=config.model.trust_remote_code,
                       attn_implementation=config.model.attn_implementation)
    model.train()
    model.config.use_cache = False  # a KV cache in training also disables packed-sequence masks
    micro = int(config.training.per_device_train_batch_size)
    pad = plan.stats.pad_fraction(micro) if plan.stats else 0.0
    grouped = plan.stats.grouped_pad_fraction(micro) if plan.stats else 0.0
    say(f"padding: {pad:.1%} of tokens would be padding unpacked, {grouped:.1%} length-grouped, 0% packed; "
        + ("packing on" if data.packing else "length-grouped batches" if data.group_by_length else "plain batches"))
    extra = list(extra_train_samples or [])
    held_out = {str(r["source"]) for r in val_rows}
    renamed: list[dict[str, Any]] = []
    if data.identity_replay is True and stream:
        say("identity replay: off for streamed data (the training questions are not in memory to answer)")
    if data.identity_replay is True and config.identity.name and not stream:
        from glmtune.train.identity_replay import identity_replay_rows

        with generation_progress(model, None, "identity replay: drafting"):
            renamed = identity_replay_rows(
                model, tokenizer, layout, train_enc.conversations, config.identity.name, config.identity.author,
                held_out, data.max_length, data.truncation, out if main else None, say)
    replayed: int | None = None  # self-replay samples the base model answered (None: self-replay not run)
    if float(data.self_replay) > 0 and not stream:
        from glmtune.train.self_replay import self_replay_rows

        names = tuple(n for n in (config.identity.name, config.identity.author) if n)
        # the ratio holds against everything the fine-tune teaches, renamed identity answers included
        replay_rows = self_replay_rows(
            model, tokenizer, layout, float(data.self_replay), train_enc.conversations, n_task + len(renamed),
            config.training.seed, data.max_length, data.truncation, names, out if main else None, say,
            data.self_replay_prompts, data.self_replay_context, held_out)
        replayed = len(replay_rows)
        extra += replay_rows
    extra += renamed
    if main:
        from glmtune.report.data import record_run_data

        record_run_data(out, config, train_enc, eval_enc, {
            "training": len(train_rows) if not stream else None, "validation": len(val_rows),
            "replay": len(picked or []), "self_replay": replayed, "identity_replay": len(renamed),
            "other_extra": len(extra_train_samples or [])}, stream is not None)
    train_dataset = train_rows if stream else to_dataset(train_rows, picked, extra)
    enable_checkpointing(model, config.training.gradient_checkpointing, say)
    from transformers import set_seed

    set_seed(config.training.seed)  # adapter initialisation (LoRA A, prefixes) must be reproducible
    with quiet_peft():
        model = apply_method(model, config)
    apply_fusions(model, config, say)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    say(f"model: {params:,} parameters, {trainable:,} trainable ({config.peft.method})")

    log = JsonlLogCallback(out / "log.jsonl", append=checkpoint is not None or not main)
    steps_log = StepLog(out / STEPS_FILE, append=checkpoint is not None) if main else None
    bar = ProgressBarCallback()

    def on_steps(rows: list[dict]) -> None:
        if steps_log is not None:
            steps_log.write(rows)
        bar.show_steps(rows)

    guard = SpikeGuard(config.stability) if config.stability.enabled else None
    has_eval = bool(val_rows)
    callbacks: list[Any] = [log, bar]
    if has_eval and config.training.early_stopping:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=int(config.training.patience)))
    from glmtune.train.trainer import GuardedTrainer

    suppress = suppressed_ids(tokenizer, config, say)
    trainer = GuardedTrainer(
        model=model,
        args=training_arguments(config, precision.bf16, precision.fp16, has_eval),
        train_dataset=train_dataset,
        eval_dataset=to_dataset(val_rows) if has_eval else None,
        data_collator=collator(tokenizer, bool(data.packing)),
        callbacks=callbacks,
        guard=guard,
        on_event=log.write if main else None,
        on_steps=on_steps if main else None,
        checkpoint_files={"config.yaml": yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False,
                                                        allow_unicode=True),
                          FINGERPRINT: json.dumps(current, indent=1)},
        suppress_ids=suppress,
        suppress_weight=float(config.identity.unlikelihood),
        chunked_loss=chunked_loss_on(model, config, say),
        anchor_weight=anchor_weight(plan, replayed, say),
        causal_padding=mask_free(model, bool(data.packing)),
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.final_check()

    best_step, best_loss = best_checkpoint(trainer.state)
    model.config.use_cache = True  # saved models generate with a KV cache
    trainer.save_model(str(out))  # every rank takes part (DeepSpeed/FSDP gather); only rank 0 writes
    if not main:
        return TrainResult(out, trainer.state.global_step, None, None, best_step, best_loss, 0,
                           round(time.perf_counter() - started, 2), plan)
    tokenizer.save_pretrained(str(out))
    save_stop_ids(config.model.name_or_path, layout.stop_ids, tokenizer.pad_token_id, out)
    (out / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True))
    from glmtune.report.card import write_run_card

    write_run_card(out, config.model.name_or_path, config.peft.method)  # not PEFT's empty template
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    summary = {
        "steps": trainer.state.global_step,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "best_step": best_step,
        "best_eval_loss": best_loss,
        "stopped_early": bool(has_eval and trainer.state.global_step < trainer.state.max_steps),
        "guard": guard.summary() if guard else "stability guard: off",
        "pad_fraction_unpacked": round(pad, 4),
        "packing": bool(data.packing),
        "guard_events": [vars(e) for e in guard.events] if guard else [],
        "precision": precision.reason,
        "seconds": round(time.perf_counter() - started, 2),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    log.write({"step": trainer.state.global_step, "event": "end", **{k: summary[k] for k in
                                                                   ("best_step", "best_eval_loss", "stopped_early")}})
    from glmtune.report import write_report

    report = write_report(out)
    say(summary["guard"])
    say(f"report: {report}")
    if best_step is not None:
        say(f"best validation loss {best_loss:.4f} at step {best_step}; that adapter is the one saved"
            + (" (stopped early)" if summary["stopped_early"] else ""))
    what = "adapter" if config.peft.method in ("lora", "ptuning") else "model"
    say(f"saved {what} to {out} after {summary['steps']} steps; loss {_fmt(summary['first_loss'])} -> "
        f"{_fmt(summary['final_loss'])} in {summary['seconds']:.0f}s")
    return TrainResult(out, summary["steps"], summary["first_loss"], summary["final_loss"], best_step, best_loss,
                       len(summary["guard_events"]), summary["seconds"], plan)


def _silent(*_: Any) -> None:
    return None


def best_checkpoint(state: Any) -> tuple[int | None, float | None]:
    """Step and eval loss of the best checkpoint the Trainer kept, if it tracked one."""
    if not state.best_model_checkpoint:
        return None, None
    step = int(str(state.best_model_checkpoint).rstrip("/").rsplit("-", 1)[-1])
    return step, state.best_metric


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"
