"""The language-model loss without the full logits tensor: only trained positions, a chunk at a time.

transformers computes ``lm_head`` over every position of the batch and keeps the fp32 logits, their softmax for
the backward pass and then their gradient: three tensors of tokens x vocabulary. For GLM-4's 151,552-token
vocabulary that is 0.6 MB a token in fp32 (2.4 GB for a 4,096-token micro-batch, each), more than the
activations of its 40 layers under checkpointing. Here the model returns its final hidden states instead
(``logits_to_keep=1``), the positions whose label is -100 (prompts, padding) are dropped before the head, and
the head and cross-entropy run over chunks of the rest, each under activation checkpointing, so that at most
one chunk's logits exist at a time. The same sums give the unlikelihood term (glmtune.train.regularisers.unlikelihood)
and the base anchor (glmtune.train.regularisers.anchor, whose base-model logits are made per chunk too) when they are on.
Loss and gradients equal the usual ones (tests/train/test_chunked_loss.py, tests/train/regularisers/test_anchor.py).
"""

from __future__ import annotations

from itertools import repeat
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from glmtune.train.loss_average import per_trained_token
from glmtune.train.regularisers.anchor import anchor_kl
from glmtune.train.regularisers.unlikelihood import penalty

LOSS_CHUNK_TOKENS = 1024  # rows of logits alive at once (the planner weighs this chunk in its memory estimate)


class LossParts(NamedTuple):
    """The loss terms, each normalised like the cross-entropy."""

    ce: torch.Tensor
    unlikelihood: torch.Tensor
    anchor: torch.Tensor


def _chunk_sums(hidden: torch.Tensor, targets: torch.Tensor, head: Any, banned: torch.Tensor | None,
                smoothing: float, base_hidden: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy, unlikelihood and anchor sums of one chunk, as a 3-vector (the head runs inside)."""
    logits = head(hidden).float()
    ce = F.cross_entropy(logits, targets, reduction="sum", label_smoothing=smoothing)
    zero = ce.new_zeros(())
    ul = zero if banned is None or not len(banned) else penalty(logits[~torch.isin(targets, banned)], banned).sum()
    kl = zero
    if base_hidden is not None:
        with torch.no_grad():
            base = head(base_hidden).float()
        kl = anchor_kl(logits, base, targets).sum()
    return torch.stack([ce, ul, kl])


def chunked_lm_loss(hidden: torch.Tensor, labels: torch.Tensor, head: Any, num_items: Any = None,
                    banned: torch.Tensor | None = None, smoothing: float = 0.0,
                    chunk: int = LOSS_CHUNK_TOKENS, base_hidden: torch.Tensor | None = None) -> LossParts:
    """Cross-entropy, unlikelihood and anchor terms of next-token prediction from final hidden states ``hidden``
    (B, T, H); the anchor needs the base model's final hidden states ``base_hidden`` (else it is 0).

    Each is a sum over trained positions divided by ``num_items`` when given (transformers' normalisation
    across gradient accumulation), else by the number of trained positions.
    """
    targets = labels[:, 1:].reshape(-1)
    keep = targets != -100
    rows = hidden[:, :-1].reshape(-1, hidden.shape[-1])[keep]
    targets = targets[keep]
    base_rows = (base_hidden[:, :-1].reshape(-1, hidden.shape[-1])[keep].split(chunk)
                 if base_hidden is not None else repeat(None))
    if banned is not None:
        banned = banned.to(targets.device)
    total = hidden.new_zeros(3, dtype=torch.float32)
    for h, y, b in zip(rows.split(chunk), targets.split(chunk), base_rows):
        if torch.is_grad_enabled():
            total = total + checkpoint(_chunk_sums, h, y, head, banned, smoothing, b, use_reentrant=False)
        else:
            total = total + _chunk_sums(h, y, head, banned, smoothing, b)
    if rows.shape[0] == 0:
        total = total + hidden.sum() * 0.0  # keep the graph when a micro-batch trains no position
    total = per_trained_token(total, keep.sum().clamp(min=1), num_items)
    return LossParts(total[0], total[1], total[2])


def output_head(model: Any) -> Any:
    """The model's ``lm_head``-style output layer through PEFT and DDP wrappers, or None when it has none."""
    inner = getattr(model, "module", model)  # DDP
    getter = getattr(inner, "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    return head if isinstance(head, torch.nn.Linear) else None


def supports_chunked_loss(model: Any) -> tuple[bool, str]:
    """Whether the loss can be computed from hidden states here, and why not when it cannot."""
    config = getattr(getattr(model, "module", model), "config", None)
    if output_head(model) is None:
        return False, "the model has no linear output layer (lm_head)"
    if getattr(config, "final_logit_softcapping", None):
        return False, "the model caps its logits (final_logit_softcapping), which the chunked loss does not"
    return True, ""
