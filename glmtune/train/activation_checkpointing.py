"""Activation checkpointing: full (recompute every layer) or selective (recompute only the cheap operations).

Selective checkpointing uses torch's own selective activation checkpointing
(``torch.utils.checkpoint.create_selective_checkpoint_contexts``) through the ``context_fn`` of the non-reentrant
checkpoint that transformers wraps around each decoder layer. A policy decides, operation by operation, what the
forward pass keeps: the outputs of matrix products with a wide inner dimension and of the attention kernel are
kept, since they cost many FLOPs per stored value; norms, activations, rotary embeddings, residual adds and the
thin LoRA ``B`` products are recomputed during the backward pass; glmtune's fused LoRA layer
(``glmtune::lora_linear`` from :mod:`glmtune.experimental.cpu_kernels`, a base matrix product with the adapter
added in) is kept like a matrix product; it is recognised by name, so this module does not import it. No
matrix product of the base model runs twice: on CPU a step cost 20-24% more than without checkpointing, against
31-60% for full checkpointing, and freed 65-82% of the memory that full checkpointing frees (``python -m
bench.checkpointing``).
"""

from __future__ import annotations

import functools
import logging
import warnings
from typing import Any

import torch

log = logging.getLogger(__name__)

SAVE_MIN_INNER_DIM = 128  # a matmul output costs 2·k FLOPs to recompute: keep it when k is at least this
# Custom operators kept like a wide matrix product, by name (str of the op overload).
KEPT_CUSTOM_OPS = frozenset({"glmtune.lora_linear.default"})  # glmtune.experimental.cpu_kernels.fused_lora


def _is_attention(func: Any) -> bool:
    name = str(func)
    return "scaled_dot_product" in name or "flash_attn" in name


def selective_policy(ctx: Any, func: Any, *args: Any, **kwargs: Any) -> Any:
    """Keep attention outputs and wide matmul outputs; recompute everything else."""
    from torch.utils.checkpoint import CheckpointPolicy

    aten = torch.ops.aten
    if _is_attention(func) or str(func) in KEPT_CUSTOM_OPS:
        return CheckpointPolicy.MUST_SAVE
    if func in (aten.mm.default, aten.bmm.default, aten.addmm.default, aten.baddbmm.default):
        left = args[1] if func in (aten.addmm.default, aten.baddbmm.default) else args[0]
        if left.shape[-1] >= SAVE_MIN_INNER_DIM:
            return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE


def selective_supported() -> bool:
    """Whether this torch has selective activation checkpointing (torch >= 2.4)."""
    import torch.utils.checkpoint as cp

    return hasattr(cp, "create_selective_checkpoint_contexts") and hasattr(cp, "CheckpointPolicy")


def checkpoint_kwargs(mode: bool | str) -> dict[str, Any]:
    """The keyword arguments transformers hands to ``torch.utils.checkpoint.checkpoint`` for ``mode``."""
    kwargs: dict[str, Any] = {"use_reentrant": False}
    if mode == "selective":
        from torch.utils.checkpoint import create_selective_checkpoint_contexts

        kwargs["context_fn"] = functools.partial(create_selective_checkpoint_contexts, selective_policy)
    return kwargs


def enable_checkpointing(model: Any, mode: bool | str) -> bool | str:
    """Turn on activation checkpointing in ``mode`` on a transformers model; returns the mode in effect."""
    if not mode:
        return False
    if mode == "selective" and not selective_supported():
        log.info(f"note: torch {torch.__version__} has no selective activation checkpointing; checkpointing fully")
        mode = True
    enable = getattr(model, "activation_checkpointing_enable", None)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*checkpointing.*deprecated", category=FutureWarning)
        if enable is not None:
            enable(activation_checkpointing_kwargs=checkpoint_kwargs(mode))
        else:  # transformers < 5 names it after gradients
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpoint_kwargs(mode))
    model.enable_input_require_grads()  # frozen embeddings: adapters inside checkpointed layers still get grads
    return mode
