"""Every configuration option, its type and its default, in one place.

Defaults are the official GLM-4 LoRA recipe (zai-org/GLM-4 ``finetune/configs/lora.yaml``) unless a
comment says otherwise. Each field's ``description`` is what the README's config reference shows.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    """Which base model to fine-tune."""

    name_or_path: str = Field(description="Local folder or hub id of the base model (e.g. THUDM/glm-4-9b-chat-hf).")
    trust_remote_code: bool = Field(False, description="Allow the model folder's own Python code (old GLM-4 repos).")
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = Field(
        "sdpa", description="Attention kernel handed to transformers."
    )


class DataConfig(_Section):
    """Training data and how it is laid out as tokens."""

    train_file: str = Field(description="GLM-4 messages JSONL to train on.")
    eval_file: str | None = Field(None, description="Optional JSONL for evaluation loss during training.")
    combine: bool = Field(
        True,
        description="true: train only the last assistant turn (official default); false: every assistant turn.",
    )
    max_length: int = Field(
        1025, ge=8, description="Cut samples to this many tokens (official: 512 + 512 + 1), plain right cut."
    )


class LoraConfig(_Section):
    """LoRA adapter shape (PEFT)."""

    r: int = Field(8, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA alpha (scaling = alpha / r).")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: list[str] | str = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj"],
        description="Module names to adapt; 'all-linear' adapts every linear layer.",
    )


class PeftConfig(_Section):
    """Parameter-efficient method."""

    method: Literal["lora", "full"] = Field(
        "lora", description="Tuning method: 'lora' (PEFT LoRA adapter) or 'full' (every weight is trained)."
    )
    lora: LoraConfig = Field(default_factory=LoraConfig)


class TrainingConfig(_Section):
    """Optimisation; handed to transformers' ``TrainingArguments``."""

    output_dir: str = Field("runs/glmtune", description="Where the adapter, tokenizer, config and logs go.")
    learning_rate: float = Field(5e-4, gt=0, description="Peak learning rate.")
    num_train_epochs: float = Field(3.0, gt=0, description="Epochs; ignored when max_steps > 0.")
    max_steps: int = Field(-1, description="Optimiser steps; -1 means use num_train_epochs.")
    per_device_train_batch_size: int = Field(1, ge=1, description="Micro-batch size per device.")
    per_device_eval_batch_size: int = Field(4, ge=1, description="Eval batch size per device.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimiser step.")
    lr_scheduler_type: str = Field("linear", description="transformers scheduler name (linear, cosine, ...).")
    warmup_ratio: float = Field(0.0, ge=0.0, le=1.0, description="Share of steps spent warming up.")
    max_grad_norm: float = Field(1.0, ge=0.0, description="Gradient clipping norm (0 disables).")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    seed: int = Field(42, description="Seed for weights init, data order and dropout.")
    bf16: bool | Literal["auto"] = Field(
        "auto", description="'auto': bf16 on a GPU that supports it, else fp32. true forces bf16."
    )
    fp16: bool = Field(False, description="fp16 is refused for GLM models (it overflows); see allow_fp16.")
    allow_fp16: bool = Field(False, description="Expert override: train in fp16 anyway.")
    logging_steps: int = Field(10, ge=1, description="Log loss, lr and grad norm every N optimiser steps.")
    save_steps: int = Field(500, ge=1, description="Checkpoint every N optimiser steps.")
    save_total_limit: int | None = Field(2, description="Keep at most this many checkpoints.")
    eval_steps: int = Field(500, ge=1, description="Evaluate every N steps when data.eval_file is set.")
    dataloader_num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="Label smoothing factor.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory.")
    report_to: list[str] = Field(default_factory=list, description="Trainer integrations, e.g. ['tensorboard'].")


class GlmtuneConfig(_Section):
    """A whole training run."""

    model: ModelConfig
    data: DataConfig
    peft: PeftConfig = Field(default_factory=PeftConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
