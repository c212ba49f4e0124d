"""The LoRA fine-tuning recipe, top to bottom: config -> data -> model -> Trainer -> saved adapter."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from glmtune.config.schema import GlmtuneConfig
from glmtune.layout import get_layout
from glmtune.models import load_model, load_tokenizer
from glmtune.train.callbacks import JsonlLogCallback, ProgressBarCallback
from glmtune.train.dataset import prepare_split
from glmtune.train.precision import resolve_precision


@dataclass
class TrainResult:
    """What a finished run produced."""

    output_dir: Path
    steps: int
    first_loss: float | None
    final_loss: float | None
    trained_tokens: int
    seconds: float


def build_peft_model(model: Any, config: GlmtuneConfig) -> Any:
    """Wrap ``model`` with the configured PEFT adapter."""
    from peft import LoraConfig, get_peft_model

    lora = config.peft.lora
    peft_config = LoraConfig(
        task_type="CAUSAL_LM", r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
    )
    return get_peft_model(model, peft_config)


def training_arguments(config: GlmtuneConfig, bf16: bool, fp16: bool, has_eval: bool) -> Any:
    """Map glmtune's training section onto transformers' ``TrainingArguments``."""
    import torch
    from transformers import TrainingArguments

    t = config.training
    return TrainingArguments(
        output_dir=t.output_dir,
        learning_rate=t.learning_rate,
        num_train_epochs=t.num_train_epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_ratio,  # a float in [0, 1) is a ratio of total steps
        max_grad_norm=t.max_grad_norm,
        weight_decay=t.weight_decay,
        seed=t.seed,
        bf16=bf16,
        fp16=fp16,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=t.eval_steps if has_eval else None,
        label_smoothing_factor=t.label_smoothing,
        gradient_checkpointing=t.gradient_checkpointing,
        dataloader_num_workers=t.dataloader_num_workers,
        report_to=t.report_to or "none",
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
        use_cpu=not torch.cuda.is_available(),
    )


def train(config: GlmtuneConfig, say: Any = print, extra_train_samples: list[dict] | None = None) -> TrainResult:
    """Fine-tune ``config.model`` on ``config.data`` and save adapter, tokenizer, config and logs.

    ``extra_train_samples`` (``{"input_ids", "labels"}`` rows) are appended to the training split, for
    callers that mix in samples that are not chat conversations, such as plain documents.
    """
    from transformers import DataCollatorForSeq2Seq, PrinterCallback, Trainer

    started = time.perf_counter()
    precision = resolve_precision(config.training)
    out = Path(config.training.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    say(f"precision: {precision.reason}")

    tokenizer = load_tokenizer(config.model.name_or_path, config.model.trust_remote_code)
    layout = get_layout(tokenizer)
    say(f"layout: {layout.name}; stop ids {layout.stop_ids}")
    data = config.data
    train_data = prepare_split(data.train_file, layout, data.combine, data.max_length, out / "rejected.jsonl", say)
    if extra_train_samples:
        from datasets import Dataset, concatenate_datasets

        extra = Dataset.from_list([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in extra_train_samples])
        train_data.dataset = concatenate_datasets([train_data.dataset, extra.cast(train_data.dataset.features)])
        say(f"  + {len(extra)} extra samples")
    eval_data = None
    if data.eval_file:
        eval_data = prepare_split(
            data.eval_file, layout, data.combine, data.max_length, out / "rejected_eval.jsonl", say
        )

    model = load_model(
        config.model.name_or_path, dtype=precision.dtype, trust_remote_code=config.model.trust_remote_code,
        attn_implementation=config.model.attn_implementation,
    )
    model.train()
    if config.training.gradient_checkpointing:
        model.enable_input_require_grads()
    if config.peft.method == "lora":
        model = build_peft_model(model, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    say(f"model: {total:,} parameters, {trainable:,} trainable ({config.peft.method})")

    trainer = Trainer(
        model=model,
        args=training_arguments(config, precision.bf16, precision.fp16, eval_data is not None),
        train_dataset=train_data.dataset,
        eval_dataset=eval_data.dataset if eval_data else None,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
        callbacks=[JsonlLogCallback(out / "log.jsonl"), ProgressBarCallback()],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()

    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))
    (out / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True))
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    summary = {
        "steps": trainer.state.global_step,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "trained_tokens": train_data.encoded.trained_tokens,
        "precision": precision.reason,
        "seconds": round(time.perf_counter() - started, 2),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    what = "adapter" if config.peft.method == "lora" else "model"
    say(f"saved {what} to {out} after {summary['steps']} steps; loss {summary['first_loss']} -> {summary['final_loss']}")
    return TrainResult(out, summary["steps"], summary["first_loss"], summary["final_loss"],
                       summary["trained_tokens"], summary["seconds"])
