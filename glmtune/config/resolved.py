"""The config a run uses after planning: ``ResolvedConfig``, with no ``"auto"`` left where the planner decides.

Each resolved section subclasses its schema section and narrows only the fields the capacity planner resolves
(``X | Auto`` becomes ``X``), so names, every other type and every default stay in ``schema.py``. Four keys are
not the planner's and keep ``auto``, resolved where they are used (``RUNTIME_AUTO``). A value that does not
apply to the run (LoRA's shape without LoRA, epochs when ``training.max_steps`` is set) is ``None``, written
as ``auto`` so that a resolved config dumps exactly as the planned one.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, WrapSerializer, model_validator

from glmtune.config.schema import (
    DataConfig,
    Fraction,
    GlmtuneConfig,
    IdentityConfig,
    LoraConfig,
    NonNegativeFloat,
    NonNegativeInt,
    PeftConfig,
    PositiveFloat,
    PositiveInt,
    TrainingConfig,
)

# ``auto`` keys resolved at run time by the code that uses them, not by the planner
RUNTIME_AUTO = {
    "data.num_proc": "tokenizing processes, from the number of conversations (glmtune.train.tokenize)",
    "training.bf16": "the precision policy, from the GPU (glmtune.train.precision)",
    "training.dataloader_num_workers": "from the GPUs and cores (glmtune.train.arguments)",
    "identity.rewrite_tool_prompt": "from the tokenizer's chat template (glmtune.train.prepare)",
}

T = TypeVar("T")


def _none_as_auto(value: Any, handler: Any) -> Any:
    return "auto" if value is None else handler(value)


# None: the key does not apply to this run; dumped as ``auto``, as the config left it
Unused = Annotated[T | None, WrapSerializer(_none_as_auto)]


class UnresolvedError(RuntimeError):
    """A planned config with ``auto`` left where the planner decides: a planner bug."""


class ResolvedLoraConfig(LoraConfig):
    """LoRA's shape, planned (None: the run does not train LoRA)."""

    r: Unused[PositiveInt]
    alpha: Unused[PositiveInt]
    dropout: Unused[Fraction]


class ResolvedPeftConfig(PeftConfig):
    """The tuning method with LoRA's shape planned."""

    lora: ResolvedLoraConfig

    @model_validator(mode="after")
    def _lora_shape_set(self) -> ResolvedPeftConfig:
        """A LoRA run has its rank, alpha and dropout."""
        unset = [f"peft.lora.{k}" for k in ("r", "alpha", "dropout") if getattr(self.lora, k) is None]
        if unset and self.method == "lora":
            raise ValueError(f"{', '.join(unset)} unset for peft.method lora")
        return self


class ResolvedDataConfig(DataConfig):
    """The data section, planned."""

    packing: bool
    group_by_length: bool
    val_size: NonNegativeInt
    replay_ratio: NonNegativeFloat
    self_replay: NonNegativeFloat
    identity_replay: bool
    streaming: bool


class ResolvedTrainingConfig(TrainingConfig):
    """The training section, planned (``num_train_epochs`` None: ``max_steps`` sets the length)."""

    learning_rate: PositiveFloat
    num_train_epochs: Unused[PositiveFloat]
    per_device_train_batch_size: PositiveInt
    gradient_accumulation_steps: PositiveInt
    warmup_ratio: Fraction
    weight_decay: NonNegativeFloat
    neftune_noise_alpha: NonNegativeFloat
    patience: PositiveInt
    eval_steps: PositiveInt
    gradient_checkpointing: bool | Literal["selective"]
    chunked_loss: bool
    fused_lora: bool
    base_anchor: NonNegativeFloat

    @model_validator(mode="after")
    def _length_set(self) -> ResolvedTrainingConfig:
        """Epochs are unset only when ``max_steps`` sets the run's length."""
        if self.num_train_epochs is None and self.max_steps <= 0:
            raise ValueError("training.num_train_epochs unset without training.max_steps")
        return self


class ResolvedIdentityConfig(IdentityConfig):
    """The identity section, planned."""

    unlikelihood: NonNegativeFloat
    spelling_weight: NonNegativeFloat


class ResolvedConfig(GlmtuneConfig):
    """A whole run's config after planning."""

    peft: ResolvedPeftConfig
    data: ResolvedDataConfig
    training: ResolvedTrainingConfig
    identity: ResolvedIdentityConfig


# the resolved section of each dotted prefix; the planner resolves every field its class declares
SECTIONS: dict[str, type[BaseModel]] = {
    "peft.lora": ResolvedLoraConfig,
    "data": ResolvedDataConfig,
    "training": ResolvedTrainingConfig,
    "identity": ResolvedIdentityConfig,
}


def planned_keys() -> list[str]:
    """Every dotted key the planner resolves (``auto`` is not a value they can keep)."""
    return [f"{prefix}.{name}" for prefix, cls in SECTIONS.items() for name in inspect.get_annotations(cls)]


def unused_keys(config: GlmtuneConfig) -> list[str]:
    """Planned keys that do not apply to ``config``'s run (the planner leaves them at auto)."""
    lora = ["peft.lora.r", "peft.lora.alpha", "peft.lora.dropout"] if config.peft.method != "lora" else []
    return lora + (["training.num_train_epochs"] if config.training.max_steps > 0 else [])


def resolve_config(config: GlmtuneConfig) -> ResolvedConfig:
    """The planned ``config`` as a ``ResolvedConfig``; ``UnresolvedError`` names any key the planner left at auto."""
    data = config.model_dump()
    unused, left = set(unused_keys(config)), []
    for key in planned_keys():
        *path, name = key.split(".")
        section = data
        for part in path:
            section = section[part]
        if section[name] == "auto":
            if key not in unused:
                left.append(key)
            section[name] = None
    if left:
        raise UnresolvedError(f"the planner left {', '.join(left)} at auto (a glmtune bug: please report it)")
    return ResolvedConfig.model_validate(data)
