"""Anchor to the base model: where the base already predicts the data's next token, keep its whole distribution.

A LoRA fine-tune on a few dozen samples moves more than the data asks for: the skills a tiny model loses are
in contexts the data never shows. Self-replay trains the base model's own greedy replies, which pins one token
per position. The anchor term adds, at every trained position where the base model's top token already equals
the target (most of a self-replay reply, the shared words of a new identity answer), the KL divergence from the
base model's next-token distribution to the fine-tuned one, so the rest of that distribution stays put too.
Positions where the data asks for a change (the new name, the new maker) are left to the cross-entropy. The
base model is the same network with its adapter switched off, run once more per step without gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from glmtune.train.loss_average import per_trained_token


def anchor_kl(logits: torch.Tensor, base_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """KL(base || model) for each row (N, vocab) whose base top token equals ``targets``; other rows give 0."""
    agree = (base_logits.argmax(dim=-1) == targets).float()
    kl = F.kl_div(F.log_softmax(logits.float(), dim=-1), F.log_softmax(base_logits.float(), dim=-1),
                  reduction="none", log_target=True).sum(dim=-1)
    return kl * agree


def anchor_loss(logits: torch.Tensor, base_logits: torch.Tensor, labels: torch.Tensor,
                num_items: torch.Tensor | int | None = None) -> torch.Tensor:
    """Sum of ``anchor_kl`` over trained positions (labels != -100, next-token shift), normalised like the
    cross-entropy: divided by ``num_items`` when given, else by the number of trained positions."""
    targets = labels[:, 1:]
    trained = targets != -100
    if not bool(trained.any()):
        return logits.sum() * 0.0
    kl = anchor_kl(logits[:, :-1][trained], base_logits[:, :-1][trained], targets[trained])
    return per_trained_token(kl.sum(), trained.sum(), num_items)
