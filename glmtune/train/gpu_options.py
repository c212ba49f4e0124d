"""Options that need a GPU or an optional package: QLoRA (``model.quantization``), FSDP (``training.fsdp``) and
Liger kernels (``training.liger_kernels``). Checked when a run starts, with errors that name the key.

Liger's Triton kernels replace GLM-4's RMSNorm and SwiGLU MLP (``liger_kernel.transformers``, the same
per-model patch that transformers' ``use_liger_kernel`` applies); its fused linear cross-entropy is left out, since
glmtune computes the loss itself (``training.chunked_loss``) from the model's hidden states.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from glmtune.config.loader import ConfigError
from glmtune.config.schema import GlmtuneConfig
from glmtune.errors import UserError
from glmtune.quantization import check_quantization

log = logging.getLogger(__name__)

LIGER_KEY = "training.liger_kernels"


def check_gpu_options(config: GlmtuneConfig) -> None:
    """Refuse, naming the key, a quantized base without bitsandbytes or for a method other than LoRA, FSDP without
    CUDA GPUs, and Liger kernels without the package or without a CUDA GPU."""
    check_quantization(config.model.quantization, config.peft.method)
    t = config.training
    if not (t.liger_kernels or t.fsdp):
        return
    import torch

    gpu = torch.cuda.is_available()
    if t.fsdp and not gpu:
        raise ConfigError(f"training.fsdp: {t.fsdp!r} needs CUDA GPUs: accelerate {_version('accelerate')} shards "
                          "with FSDP only on GPUs, and on CPU processes it would silently train plain DDP, every "
                          "process holding the whole model; unset training.fsdp to train with DDP "
                          "(docs/guides/distributed.md)")
    if t.liger_kernels and not gpu:
        raise ConfigError(f"{LIGER_KEY}: Liger's kernels are Triton kernels for CUDA GPUs and this machine has none; "
                          "set it to false")
    if t.liger_kernels and importlib.util.find_spec("liger_kernel") is None:
        raise UserError(f"{LIGER_KEY}: true needs the liger-kernel package, which is not installed: "
                        "pip install liger-kernel")


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "(not installed)"


def apply_liger_kernels(model: Any) -> list[str]:
    """Patch ``model`` (before PEFT wraps it) with Liger's kernels except its loss; returns what was patched."""
    from liger_kernel.transformers.monkey_patch import (
        MODEL_TYPE_TO_APPLY_LIGER_FN,
        _apply_liger_kernel_to_instance,
    )

    model_type = getattr(model.config, "model_type", None)
    if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        raise UserError(f"{LIGER_KEY}: liger-kernel has no kernels for model type {model_type!r}; set it to false")
    _apply_liger_kernel_to_instance(model=model, fused_linear_cross_entropy=False, cross_entropy=False)
    patched = sorted({type(m).__name__ for m in model.modules()
                      if str(getattr(m.forward, "__module__", "") or "").startswith("liger_kernel")})
    log.info(f"liger kernels: applied to the {model_type} model ({', '.join(patched) or 'no module reported'}); "
             "the loss stays glmtune's")
    return patched
