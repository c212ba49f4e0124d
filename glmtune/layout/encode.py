"""Turn conversations into training samples: layout, right cut, and drop what would train nothing."""

from __future__ import annotations

from dataclasses import dataclass, field

from glmtune.data.conversation import Conversation, Problem
from glmtune.layout.base import IGNORE_INDEX, ChatLayout, LayoutError
from glmtune.layout.truncate import keep_recent, right_cut


@dataclass
class EncodeResult:
    """Kept samples (in input order) and a problem for every conversation that was dropped."""

    input_ids: list[list[int]] = field(default_factory=list)
    labels: list[list[int]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    dropped: list[Problem] = field(default_factory=list)
    truncated: int = 0  # samples the length policy touched
    trained_tokens: int = 0
    trained_tokens_removed: int = 0  # supervised tokens lost to the length policy

    @property
    def total_tokens(self) -> int:
        """All kept tokens, trained or not."""
        return sum(len(x) for x in self.input_ids)


@dataclass
class EncodedOne:
    """One conversation fitted to ``max_length``; ``problem`` is (code, reason) when it trains nothing."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool
    trained: int
    trained_removed: int
    problem: tuple[str, str] | None


def encode_one(messages: list[dict], layout: ChatLayout, combine: bool, max_length: int,
               truncation: str = "official") -> EncodedOne:
    """Encode one conversation and fit it by the ``truncation`` policy (see ``encode_conversations``)."""
    sample = layout.encode(messages, combine=combine)
    ids, labels = sample.input_ids, sample.labels
    truncated, removed = False, 0
    if len(ids) > max_length:
        truncated = True
        fitted = (keep_recent(layout, messages, combine, max_length) if truncation == "keep_recent"
                  else right_cut(sample, max_length))
        removed = max(0, sample.num_trained - fitted.num_trained)
        ids, labels = fitted.input_ids, fitted.labels
    trained = sum(1 for x in labels if x != IGNORE_INDEX)
    problem = None
    if trained == 0:
        why = (
            f"all supervised tokens fall beyond data.max_length={max_length} ({len(sample.input_ids)} tokens)"
            if sample.num_trained
            else "no supervised token (every assistant reply has loss: false)"
        )
        problem = ("all_labels_truncated" if sample.num_trained else "nothing_to_train", why)
    return EncodedOne(ids, labels, truncated, trained, removed, problem)


def encode_conversations(
    conversations: list[Conversation], layout: ChatLayout, combine: bool, max_length: int,
    truncation: str = "official",
) -> EncodeResult:
    """Encode with ``layout`` and fit ``max_length`` by the ``truncation`` policy (``official`` or
    ``keep_recent``); a sample left with no trained token is dropped and reported."""
    result = EncodeResult()
    for conv in conversations:
        try:
            one = encode_one(conv.messages, layout, combine, max_length, truncation)
        except LayoutError as exc:  # name the record the template cannot lay out
            raise LayoutError(f"{conv.source}: {exc}" if conv.source else str(exc)) from None
        result.truncated += one.truncated
        result.trained_tokens_removed += one.trained_removed
        if one.problem:
            result.dropped.append(Problem(conv.source, *one.problem))
            continue
        result.input_ids.append(one.input_ids)
        result.labels.append(one.labels)
        result.sources.append(conv.source)
        result.trained_tokens += one.trained
    return result
