"""The repetition guard: stop a reply that has fallen into a loop of repeated token n-grams.

A reply loops when its last ``n * k`` tokens are the same ``n`` tokens repeated ``k`` times back to back,
with ``k >= min_repeats`` and ``n * k >= min_span`` for some ``1 <= n <= max_n``. Such a reply is cut and
reported with ``finish_reason`` ``length`` and a ``loop`` flag.
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
    """Per-row stop signal for ``generate`` when the newly generated tokens end in a loop."""

    def __init__(self, prompt_length: int, rule: LoopRule) -> None:
        self.prompt_length = prompt_length
        self.rule = rule

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        done = [tail_loops(row[self.prompt_length:].tolist(), self.rule) for row in input_ids]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
