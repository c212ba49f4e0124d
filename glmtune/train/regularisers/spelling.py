"""Spelling weight: the later tokens of a multi-token identity name count more in the loss.

A name the tokenizer does not hold is spelled in pieces ("Draskou" is D|ra|s|k|ou in a small vocabulary). The
first piece follows from the question; each later piece has to be remembered, and a few dozen samples teach it
weakly: on the quality benchmark the misses start the name and then wander into the maker's letters ("I am
Drasdio"), while one-token names never miss that way (bench/RESULTS.md, identity at depth). This term adds the
cross-entropy of those later pieces once more, times a weight, wherever the training targets spell the name or
the maker.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from glmtune.train.loss_average import per_trained_token


def name_token_sequences(tokenizer: Any, texts: tuple[str, ...]) -> list[tuple[int, ...]]:
    """Each text's token ids as a reply may spell it (bare and after a space), where it takes two or more."""
    sequences: set[tuple[int, ...]] = set()
    for text in texts:
        for variant in (text, " " + text):
            ids = tuple(int(i) for i in tokenizer(variant, add_special_tokens=False)["input_ids"])
            if len(ids) >= 2:
                sequences.add(ids)
    return sorted(sequences)


def later_name_positions(targets: torch.Tensor, sequences: list[tuple[int, ...]]) -> torch.Tensor:
    """A mask over ``targets`` (B, L) marking every token after the first of each occurrence of a sequence."""
    mask = torch.zeros_like(targets, dtype=torch.bool)
    for sequence in sequences:
        n = len(sequence)
        if targets.shape[1] < n:
            continue
        windows = targets.unfold(1, n, 1)  # (B, L - n + 1, n)
        found = (windows == torch.tensor(sequence, device=targets.device)).all(dim=-1)
        width = found.shape[1]
        for k in range(1, n):
            mask[:, k:k + width] |= found
    return mask


def spelling_loss(logits: torch.Tensor, targets: torch.Tensor, trained: torch.Tensor,
                  num_items: torch.Tensor | int | None = None) -> torch.Tensor:
    """Cross-entropy summed over the chosen rows ``logits`` (N, vocab), normalised like the language-model loss:
    by ``num_items`` when given, else by the number of trained positions ``trained``."""
    if targets.numel() == 0:
        return logits.sum() * 0.0
    return per_trained_token(F.cross_entropy(logits.float(), targets, reduction="sum"), trained, num_items)
