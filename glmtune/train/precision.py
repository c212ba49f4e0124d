"""Precision policy: bf16 where the hardware supports it, else fp32; fp16 refused for GLM models."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from glmtune.config.schema import TrainingConfig
from glmtune.errors import UserError
from glmtune.train.preflight import FP16_REFUSAL


@dataclass
class Precision:
    """The chosen training precision and why."""

    bf16: bool
    fp16: bool
    dtype: torch.dtype
    reason: str


def bf16_supported() -> bool:
    """True when a CUDA device with native bf16 is present."""
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def resolve_precision(cfg: TrainingConfig) -> Precision:
    """Apply the policy to ``training.bf16`` / ``training.fp16`` / ``training.allow_fp16``."""
    if cfg.fp16:
        if not cfg.allow_fp16:
            raise UserError(FP16_REFUSAL)
        return Precision(False, True, torch.float32, "fp16 mixed precision (training.allow_fp16 override)")
    if cfg.bf16 is True:
        if not bf16_supported() and torch.cuda.is_available():
            raise UserError("training.bf16: true, but this GPU has no bf16 support; use training.bf16: auto")
        return Precision(True, False, torch.float32, "bf16 mixed precision (training.bf16: true)")
    if cfg.bf16 == "auto" and bf16_supported():
        return Precision(True, False, torch.float32, "bf16 mixed precision (auto: GPU supports bf16)")
    why = "training.bf16: false" if cfg.bf16 is False else "auto: no bf16-capable GPU"
    return Precision(False, False, torch.float32, f"fp32 ({why})")
