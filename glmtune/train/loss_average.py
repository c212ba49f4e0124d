"""How every loss term is averaged: like transformers' cross-entropy, so that the terms add up across accumulation."""

from __future__ import annotations

from typing import Any

import torch


def per_trained_token(total: torch.Tensor, trained: torch.Tensor | int, num_items: Any = None) -> torch.Tensor:
    """``total`` divided by ``num_items`` when given (the trained tokens of the whole accumulated batch, as
    transformers passes them), else by ``trained``, this micro-batch's trained positions."""
    denominator = num_items if num_items is not None else trained
    if isinstance(denominator, torch.Tensor):
        denominator = denominator.to(total.device)
    return total / denominator
