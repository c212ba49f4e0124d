"""The repetition guard: stop a reply that has fallen into a loop of repeated token n-grams.

A reply loops when its last ``n * k`` tokens are the same ``n`` tokens repeated ``k`` times back to back,
with ``k >= min_repeats`` and ``n * k >= min_span`` for some ``1 <= n <= max_n``. Such a reply is cut and
reported with ``finish_reason`` ``length`` and a ``loop`` flag, at any batch size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import StoppingCriteria


@dataclass(frozen=True)
class LoopRule:
    """When a tail of generated tokens counts as a loop."""

    min_repeats: int = 4
    min_span: int = 16
    max_n: int = 12


DEFAULT_LOOP_RULE = LoopRule()


def tail_loops(ids: list[int], rule: LoopRule) -> bool:
    """True when ``ids`` ends with a loop as ``rule`` defines it."""
    for n in range(1, rule.max_n + 1):
        block = ids[-n:]
        if len(block) < n:
            break
        k = 1
        while len(ids) >= n * (k + 1) and ids[-n * (k + 1): -n * k] == block:
            k += 1
        if k >= rule.min_repeats and n * k >= rule.min_span:
            return True
    return False


class LoopStoppingCriteria(StoppingCriteria):
    """Per-row stop signal for ``generate`` when the newly generated tokens end in a loop.

    ``cut_at`` maps each row the guard stopped to how many tokens it had generated then. In a batch,
    ``generate`` pads a finished row with the pad id, which may also be a stop id (GLM-4's
    ``<|endoftext|>``); ``cut_at`` is how a loop cut is told apart from a stop after the fact.
    """

    def __init__(self, prompt_length: int, rule: LoopRule) -> None:
        self.prompt_length = prompt_length
        self.rule = rule
        self.cut_at: dict[int, int] = {}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        generated = input_ids.shape[1] - self.prompt_length
        done = []
        for i, row in enumerate(input_ids):
            if i not in self.cut_at and tail_loops(row[self.prompt_length:].tolist(), self.rule):
                self.cut_at[i] = generated
            done.append(i in self.cut_at)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
