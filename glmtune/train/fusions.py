"""Which of glmtune's fused layers a run uses, and the log line that says so (training.fused_*)."""

from __future__ import annotations

import contextlib
from typing import Any

from glmtune.config.schema import GlmtuneConfig


def apply_fusions(model: Any, config: GlmtuneConfig, say: Any) -> contextlib.AbstractContextManager:
    """Fuse LoRA layers and norms in ``model`` as configured; returns the context the training loop runs in."""
    if config.peft.method == "lora" and config.training.fused_lora:
        from glmtune.train.fused_lora import fuse_lora

        say(f"fused LoRA: {fuse_lora(model)} linear layers (training.fused_lora)")
    if not config.training.fused_norm_rotary:
        return contextlib.nullcontext()
    if config.training.torch_compile:
        say("fused norms and rotary: left to the compiler (training.torch_compile fuses element-wise operations)")
        return contextlib.nullcontext()
    from glmtune.train.fused_norm import fuse_norms
    from glmtune.train.fused_rotary import fused_rotary, rotary_families

    families = rotary_families(model)
    say(f"fused norms: {fuse_norms(model)} RMSNorm layers; rotary as a complex product: "
        f"{'yes' if families else 'no (not a GLM model)'} (training.fused_norm_rotary)")
    return fused_rotary() if families else contextlib.nullcontext()
