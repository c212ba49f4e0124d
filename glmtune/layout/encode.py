"""The one encoding step: conversation -> fill placeholders -> clean -> encode (layout, fit to ``max_length``).

``EncodeSpec`` is everything a training sample depends on besides the data itself; ``ConversationStep`` applies
it to one file's conversations in order. The Arrow cache (``train/tokenize.py``), streaming (``train/stream.py``)
and the replay rows (``encode_conversations``) all go through it, so the same record becomes the same sample, or
the same reject row, whichever way it is read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from glmtune.data.conversation import Conversation, Problem
from glmtune.data.placeholders import fill_placeholders, find_placeholders
from glmtune.data.train_clean import CleanSettings, TrainingCleaner, clean_summary
from glmtune.layout.base import IGNORE_INDEX, ChatLayout, EncodedSample, LayoutError
from glmtune.layout.truncate import keep_recent, right_cut

Reject = dict[str, Any]  # a row of rejected.jsonl: source, code, reason (and raw, when the record is kept whole)


@dataclass(frozen=True)
class EncodeSpec:
    """How conversations become samples: layout, length policy, placeholder values and the training cleaner.

    ``values`` None: no placeholder stage (generated replay rows); ``{}``: unfilled ``{{...}}`` are rejected.
    ``clean`` None: no repairs, deduplication or identity filter.
    """

    layout: ChatLayout
    combine: bool
    max_length: int
    truncation: str = "official"
    values: Mapping[str, str] | None = None
    clean: CleanSettings | None = None
    train_reasoning: bool = True

    def key_parts(self) -> dict[str, Any]:
        """The spec as JSON-friendly data, for cache keys."""
        return {"layout": self.layout.name, "combine": self.combine, "max_length": self.max_length,
                "truncation": self.truncation, "values": None if self.values is None else dict(self.values),
                "clean": self.clean.as_dict() if self.clean else None, "train_reasoning": self.train_reasoning}

    def encode(self, messages: list[dict[str, Any]], source: str = "") -> EncodedOne:
        """Encode one prepared conversation and fit it by the length policy; errors name ``source``."""
        try:
            return encode_one(messages, self.layout, self.combine, self.max_length, self.truncation,
                              self.train_reasoning)
        except LayoutError as exc:  # name the record the template cannot lay out
            raise LayoutError(f"{source}: {exc}" if source else str(exc)) from None

    def step(self) -> ConversationStep:
        """A fresh step for one file (or one pass over it): the cleaner remembers what it has seen."""
        return ConversationStep(self)


@dataclass
class EncodedOne(EncodedSample):
    """One conversation fitted to ``max_length``; ``problem`` is (code, reason) when it trains nothing."""

    truncated: bool = False
    trained: int = 0
    trained_removed: int = 0
    problem: tuple[str, str] | None = None


@dataclass
class EncodeCounts:
    """What reading and encoding did to a set of records: every count is defined, and summed, here."""

    records: int = 0  # records read
    rejected: int = 0  # records left out (removed duplicates are not counted)
    truncated: int = 0  # samples the length policy touched
    trained_tokens: int = 0  # supervised tokens of the kept samples
    trained_tokens_removed: int = 0  # supervised tokens lost to the length policy

    def merge(self, other: EncodeCounts) -> None:
        """Add ``other``'s counts to these."""
        for name in (f.name for f in fields(EncodeCounts)):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class EncodeResult(EncodeCounts):
    """Kept samples (in input order) and a problem for every conversation that was dropped, with the counts."""

    input_ids: list[list[int]] = field(default_factory=list)
    labels: list[list[int]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    dropped: list[Problem] = field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        """All kept tokens, trained or not."""
        return sum(len(x) for x in self.input_ids)

    def add(self, source: str, one: EncodedOne) -> None:
        """Count ``one``; keep it when it trains something, else record why it is dropped."""
        self.truncated += one.truncated
        self.trained_tokens_removed += one.trained_removed
        if one.problem:
            self.dropped.append(Problem(source, *one.problem))
            return
        self.input_ids.append(one.input_ids)
        self.labels.append(one.labels)
        self.sources.append(source)
        self.trained_tokens += one.trained


class ConversationStep:
    """``EncodeSpec`` applied to one file's conversations, in file order (duplicates are found within a file)."""

    def __init__(self, spec: EncodeSpec) -> None:
        self.spec = spec
        self.cleaner = TrainingCleaner(spec.clean) if spec.clean else None
        self.placeholder_rejected = 0

    def prepare(self, conv: Conversation) -> tuple[Conversation | None, Reject | None]:
        """Fill placeholders and clean: the conversation to encode, or None and the reject row saying why."""
        messages, values = conv.messages, self.spec.values
        if values is not None:
            messages = fill_placeholders(messages, dict(values)) if values else messages
            missing = find_placeholders(messages)
            if missing:
                self.placeholder_rejected += 1
                return None, placeholder_reject(conv.source, messages, missing)
        if conv.extra.get("enable_thinking") is False:  # a non-thinking record: the template's switch, per turn
            messages = [{**m, "enable_thinking": False} if m["role"] == "user" else m for m in messages]
        filled = Conversation(messages, conv.source, conv.extra)
        return self.cleaner(filled) if self.cleaner is not None else (filled, None)

    def __call__(self, conv: Conversation) -> tuple[Conversation, EncodedOne] | Reject:
        """The whole step: (prepared conversation, encoded sample), or the reject row of a record left out.

        A sample with a ``problem`` (nothing to train) comes back as it is, so its truncation is still counted;
        ``encode_reject`` turns it into its reject row."""
        kept, reject = self.prepare(conv)
        if kept is None:
            return reject or {}
        return kept, self.spec.encode(kept.messages, kept.source)

    @property
    def duplicates(self) -> int:
        """Exact duplicates removed so far (they do not count as rejected)."""
        return self.cleaner.duplicates if self.cleaner else 0

    @property
    def conflicts(self) -> int:
        """Replies asserting the old identity left out so far."""
        return self.cleaner.conflicts if self.cleaner else 0

    @property
    def repairs(self) -> dict[str, int]:
        """Repairs made so far, by code."""
        return dict(self.cleaner.repairs) if self.cleaner else {}

    def summary(self) -> str:
        """What the cleaner did, in one line (empty when nothing)."""
        return clean_summary(self.repairs, self.duplicates, self.conflicts)


def placeholder_reject(source: str, messages: list[dict], missing: set[str]) -> Reject:
    """The reject row of a conversation that still holds ``{{...}}`` placeholders."""
    names = ", ".join("{{" + m + "}}" for m in sorted(missing))
    return {"source": source, "code": "unfilled_placeholder",
            "reason": f"{names} left in the data; set identity.name / identity.author",
            "raw": json.dumps({"messages": messages}, ensure_ascii=False)}


def encode_reject(source: str, one: EncodedOne) -> Reject:
    """The reject row of a sample that trains nothing."""
    code, reason = one.problem or ("", "")
    return {"source": source, "code": code, "reason": reason}


def counts_as_rejected(row: Reject) -> bool:
    """Whether a reject row counts towards ``data.max_reject_ratio`` (removed duplicates do not)."""
    return bool(row.get("counts_as_rejected", True))


def encode_one(messages: list[dict], layout: ChatLayout, combine: bool, max_length: int,
               truncation: str = "official", train_reasoning: bool = True) -> EncodedOne:
    """Encode one conversation and fit it by the ``truncation`` policy (see ``encode_conversations``)."""
    sample = layout.encode(messages, combine=combine, train_reasoning=train_reasoning)
    ids, labels = sample.input_ids, sample.labels
    truncated, removed = False, 0
    if len(ids) > max_length:
        truncated = True
        fitted = (keep_recent(layout, messages, combine, max_length, train_reasoning) if truncation == "keep_recent"
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


def encode_all(conversations: Iterable[Conversation], spec: EncodeSpec) -> tuple[EncodeResult, list[Reject]]:
    """Run ``spec``'s step over in-memory conversations: kept samples, and the rows of those left out before
    encoding (placeholders, cleaner); samples that train nothing are in ``EncodeResult.dropped``."""
    step, result, rejects = spec.step(), EncodeResult(), []
    for conv in conversations:
        event = step(conv)
        if isinstance(event, dict):
            rejects.append(event)
        else:
            result.add(event[0].source, event[1])
    return result, rejects


def encode_conversations(
    conversations: list[Conversation], layout: ChatLayout, combine: bool, max_length: int,
    truncation: str = "official",
) -> EncodeResult:
    """Encode with ``layout`` and fit ``max_length`` by the ``truncation`` policy (``official`` or
    ``keep_recent``); a sample left with no trained token is dropped and reported."""
    return encode_all(conversations, EncodeSpec(layout, combine, max_length, truncation))[0]
