"""Checks of a training config that need no model and no torch: run before anything heavy is imported."""

from __future__ import annotations

from glmtune.config.loader import ConfigError
from glmtune.config.schema import GlmtuneConfig
from glmtune.errors import UserError
from glmtune.model_paths import check_model_path

FP16_REFUSAL = (
    "training.fp16: true is refused: GLM models overflow in fp16 (the loss turns NaN or sticks at 0; "
    "GLM-4 #96, #234). The GLM team trains in bfloat16. Use training.bf16: auto (bf16 on a GPU that "
    "supports it, else fp32), or set training.allow_fp16: true if you really know better."
)


# identity.* weights that act on the declared name, and why each needs one
NEEDS_A_NAME = (("unlikelihood", "the old identity is unlearned only when a new one is declared"),
                ("spelling_weight", "it weighs the tokens of the declared name and author"))


def preflight(config: GlmtuneConfig) -> None:
    """Refuse option combinations that cannot train and a model path that is not there, naming the key."""
    if config.training.fp16 and not config.training.allow_fp16:
        raise UserError(FP16_REFUSAL)
    check_model_path(config.model.name_or_path)  # a wrong model path fails before anything is written
    if config.peft.method == "ptuning" and config.training.gradient_checkpointing not in (False, "auto"):
        raise ConfigError("training.gradient_checkpointing: P-tuning v2 (PEFT prefix tuning) does not work with "
                          "activation checkpointing; set it to false or auto")
    if config.data.identity_replay is True and not config.identity.name:
        raise ConfigError("data.identity_replay: true needs identity.name (and identity.author to rename the maker)")
    for key, why in NEEDS_A_NAME:
        if getattr(config.identity, key) not in ("auto", 0) and not config.identity.name:
            raise ConfigError(f"identity.{key}: a weight needs identity.name ({why})")
    if config.training.base_anchor not in ("auto", 0) and config.peft.method not in ("lora", "ptuning"):
        raise ConfigError(f"training.base_anchor: needs an adapter (peft.method lora or ptuning); "
                          f"{config.peft.method} fine-tuning keeps no base model to anchor to")
