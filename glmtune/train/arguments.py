"""What the Trainer is handed: the tuning method applied to the model, and ``TrainingArguments`` from the plan."""

from __future__ import annotations

import os
from typing import Any

from glmtune.config.resolved import ResolvedConfig
from glmtune.train.moe import lora_targets, moe_shape


def apply_method(model: Any, config: ResolvedConfig) -> Any:
    """Make the parameters of the configured tuning method (already planned) trainable."""
    from peft import LoraConfig, PrefixTuningConfig, get_peft_model

    from glmtune.config.loader import ConfigError
    from glmtune.models import keep_lora_targets
    from glmtune.quantization import is_quantized, prepare_for_training

    method = config.peft.method
    if config.training.liger_kernels:
        from glmtune.train.gpu_options import apply_liger_kernels

        apply_liger_kernels(model)
    if is_quantized(model):  # QLoRA: model.quantization, or a checkpoint saved quantized
        if method != "lora":
            raise ConfigError(f"peft.method: {method} cannot train the quantized weights of "
                              f"{config.model.name_or_path}; use lora (QLoRA)")
        model = prepare_for_training(model)
    if method == "lora":
        lora = config.peft.lora  # its r, alpha and dropout are set for LoRA (ResolvedPeftConfig)
        modules, parameters = lora.target_modules, None
        if (moe := moe_shape(model, model.config)) is not None:  # never the router; routed experts on request
            modules, parameters = lora_targets(lora.target_modules, moe, lora.moe_experts, lora.dropout)
        with keep_lora_targets():
            return get_peft_model(model, LoraConfig(
                task_type="CAUSAL_LM", r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                target_modules=modules, target_parameters=parameters,
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


def training_arguments(config: ResolvedConfig, bf16: bool, fp16: bool, has_eval: bool) -> Any:
    """Map the planned training section onto transformers' ``TrainingArguments``."""
    import torch
    from transformers import TrainingArguments

    t = config.training
    stop_early = has_eval and t.early_stopping
    return TrainingArguments(
        output_dir=t.output_dir,
        learning_rate=t.learning_rate,
        # None: max_steps sets the length, and transformers' default fills the argument it then ignores
        num_train_epochs=3.0 if t.num_train_epochs is None else t.num_train_epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_ratio,  # a float in [0, 1) is a ratio of total steps
        max_grad_norm=t.max_grad_norm,
        weight_decay=t.weight_decay,
        neftune_noise_alpha=t.neftune_noise_alpha or None,
        seed=t.seed,
        data_seed=t.seed,
        bf16=bf16,
        fp16=fp16,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,  # a NaN step is logged as NaN, not hidden behind an average
        save_strategy="steps",
        save_steps=t.eval_steps if stop_early else t.save_steps,
        save_total_limit=t.save_total_limit,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=t.eval_steps if has_eval else None,
        load_best_model_at_end=stop_early,
        metric_for_best_model="eval_loss" if stop_early else None,
        greater_is_better=False if stop_early else None,
        label_smoothing_factor=t.label_smoothing,
        # checkpointing is turned on on the model itself (train/activation_checkpointing.py): its selective policy is a
        # callable that TrainingArguments could not serialise
        dataloader_num_workers=(workers := dataloader_workers(t.dataloader_num_workers)),
        dataloader_persistent_workers=workers > 0,  # no re-spawn at every epoch and evaluation
        report_to=t.report_to or "none",
        deepspeed=t.deepspeed,
        fsdp=t.fsdp or "",
        torch_compile=t.torch_compile,
        disable_tqdm=True,
        # packed rows carry no padding (and no attention mask to count it by)
        include_num_input_tokens_seen="all" if config.data.packing else "non_padding",
        train_sampling_strategy="group_by_length" if config.data.group_by_length else "random",
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
