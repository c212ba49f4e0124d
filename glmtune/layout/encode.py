"""Turn conversations into training samples: layout, right cut, and drop what would train nothing."""

from __future__ import annotations

from dataclasses import dataclass, field

from glmtune.data.conversation import Conversation, Problem
from glmtune.layout.base import IGNORE_INDEX, ChatLayout


@dataclass
class EncodeResult:
    """Kept samples (in input order) and a problem for every conversation that was dropped."""

    input_ids: list[list[int]] = field(default_factory=list)
    labels: list[list[int]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    dropped: list[Problem] = field(default_factory=list)
    truncated: int = 0
    trained_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """All kept tokens, trained or not."""
        return sum(len(x) for x in self.input_ids)


def encode_conversations(
    conversations: list[Conversation], layout: ChatLayout, combine: bool, max_length: int
) -> EncodeResult:
    """Encode with ``layout``, cut to ``max_length``; a sample left with no trained token is dropped."""
    result = EncodeResult()
    for conv in conversations:
        sample = layout.encode(conv.messages, combine=combine)
        ids, labels = sample.input_ids, sample.labels
        if len(ids) > max_length:
            result.truncated += 1
            ids, labels = ids[:max_length], labels[:max_length]
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
