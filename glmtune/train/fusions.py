"""Which of glmtune's fused layers a run uses, and the log line that says so (training.fused_lora)."""

from __future__ import annotations

from typing import Any

from glmtune.config.schema import GlmtuneConfig


def apply_fusions(model: Any, config: GlmtuneConfig, say: Any) -> None:
    """Fuse the LoRA layers of ``model`` when ``training.fused_lora`` is on (LoRA only)."""
    if config.peft.method == "lora" and config.training.fused_lora:
        from glmtune.train.fused_lora import fuse_lora

        say(f"fused LoRA: {fuse_lora(model)} linear layers (training.fused_lora)")
