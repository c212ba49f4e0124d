"""CPU-only speed code, fenced off from the core: glmtune's fused LoRA layer (``training.fused_lora``).

One entry point, :func:`apply_cpu_kernels`, which the training recipe calls once the adapters are in place.
The kernel itself is in :mod:`glmtune.experimental.cpu_kernels.fused_lora`: a custom operator
(``glmtune::lora_linear``) that replaces PEFT's LoRA forward where it computes the same values, and calls
PEFT's own forward everywhere else (bf16 autocast on a GPU included). Its gain is measured by
``python -m bench.fused_lora``.
"""

from __future__ import annotations

import logging
from typing import Any

from glmtune.config.resolved import ResolvedConfig

log = logging.getLogger(__name__)

__all__ = ["apply_cpu_kernels"]


def apply_cpu_kernels(model: Any, config: ResolvedConfig) -> None:
    """Fuse the LoRA layers of ``model`` when ``training.fused_lora`` is on (LoRA only), and log how many."""
    if config.peft.method == "lora" and config.training.fused_lora:
        from glmtune.experimental.cpu_kernels.fused_lora import fuse_lora

        log.info(f"fused LoRA: {fuse_lora(model)} linear layers (training.fused_lora)")
