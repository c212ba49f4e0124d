"""Sequence-length policies: ``official`` (plain right cut) and ``keep_recent`` (drop the oldest turns).

``keep_recent`` keeps the system prompt and its tools, drops the oldest whole turns until the sample fits,
then, if the last turn alone is still too long, cuts its prompt from the left. Only when the reply itself
is longer than the budget does it fall back to a right cut, which is the one case where the reply's
end-of-turn token can be lost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from glmtune.layout.base import IGNORE_INDEX, ChatLayout, EncodedSample


def right_cut(sample: EncodedSample, max_length: int) -> EncodedSample:
    """The official policy: keep the first ``max_length`` tokens."""
    return EncodedSample(sample.input_ids[:max_length], sample.labels[:max_length])


def turns(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """Split into the leading system messages and turns that each start at a user message."""
    head: list[dict[str, Any]] = []
    i = 0
    while i < len(messages) and messages[i]["role"] == "system":
        head.append(messages[i])
        i += 1
    groups: list[list[dict[str, Any]]] = []
    for msg in messages[i:]:
        if msg["role"] == "user" or not groups:
            groups.append([])
        groups[-1].append(msg)
    return head, groups


def keep_recent(layout: ChatLayout, messages: list[dict[str, Any]], combine: bool,
                max_length: int, train_reasoning: bool = True) -> EncodedSample:
    """Fit ``messages`` into ``max_length`` tokens, losing as little of what is trained as possible."""

    def encode(msgs: list[dict[str, Any]]) -> EncodedSample:
        return layout.encode(msgs, combine=combine, train_reasoning=train_reasoning)

    sample = encode(messages)
    if len(sample.input_ids) <= max_length:
        return sample
    head, groups = turns(messages)
    while len(groups) > 1:
        groups = groups[1:]
        sample = encode(head + [m for g in groups for m in g])
        if len(sample.input_ids) <= max_length:
            return sample
    last = groups[0] if groups else []
    if last and last[0]["role"] == "user" and len(last) > 1:
        sample = _cut_prompt_left(encode, head, last, max_length) or sample
    return right_cut(sample, max_length) if len(sample.input_ids) > max_length else sample


def _cut_prompt_left(encode_messages: Callable[[list[dict[str, Any]]], EncodedSample], head: list[dict[str, Any]],
                     turn: list[dict[str, Any]], max_length: int) -> EncodedSample | None:
    """Binary-search the longest tail of the turn's user text that fits; None when even an empty one does not."""
    text = turn[0]["content"]

    def encode(keep: int) -> EncodedSample:
        user = {**turn[0], "content": text[len(text) - keep:] if keep else "…"}
        return encode_messages(head + [user] + turn[1:])

    if len(encode(0).input_ids) > max_length:
        return None
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(encode(mid).input_ids) <= max_length:
            lo = mid
        else:
            hi = mid - 1
    return encode(lo)


def trained(sample: EncodedSample) -> int:
    """Supervised tokens in a sample."""
    return sum(1 for x in sample.labels if x != IGNORE_INDEX)
