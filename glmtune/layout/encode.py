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


def encode_conversations(
    conversations: list[Conversation], layout: ChatLayout, combine: bool, max_length: int,
    truncation: str = "official",
) -> EncodeResult:
    """Encode with ``layout`` and fit ``max_length`` by the ``truncation`` policy (``official`` or
    ``keep_recent``); a sample left with no trained token is dropped and reported."""
    result = EncodeResult()
    for conv in conversations:
        try:
            sample = layout.encode(conv.messages, combine=combine)
        except LayoutError as exc:  # name the record the template cannot lay out
            raise LayoutError(f"{conv.source}: {exc}" if conv.source else str(exc)) from None
        ids, labels = sample.input_ids, sample.labels
        if len(ids) > max_length:
            result.truncated += 1
            fitted = (keep_recent(layout, conv.messages, combine, max_length) if truncation == "keep_recent"
                      else right_cut(sample, max_length))
            result.trained_tokens_removed += max(0, sample.num_trained - fitted.num_trained)
            ids, labels = fitted.input_ids, fitted.labels
        trained = sum(1 for x in labels if x != IGNORE_INDEX)
        if trained == 0:
            why = (
                f"all supervised tokens fall beyond data.max_length={max_length} ({len(sample.input_ids)} tokens)"
                if sample.num_trained
                else "no supervised token (every assistant reply has loss: false)"
            )
            code = "all_labels_truncated" if sample.num_trained else "nothing_to_train"
            result.dropped.append(Problem(conv.source, code, why))
            continue
        result.input_ids.append(ids)
        result.labels.append(labels)
        result.sources.append(conv.source)
        result.trained_tokens += trained
    return result
