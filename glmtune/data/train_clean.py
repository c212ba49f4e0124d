"""The repairs and filters a training run applies on its own: what `data check --fix` would do, plus identity."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from glmtune.data.conversation import Conversation
from glmtune.data.identity_guard import OLD_NAMES
from glmtune.data.repair import exact_key, repair_messages


@dataclass(frozen=True)
class CleanSettings:
    """What a training run does to its data while reading it (part of the tokenisation cache key)."""

    repair: bool = True
    name: str | None = None
    author: str | None = None
    drop_conflicts: bool = True

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form for cache keys."""
        return asdict(self)


@dataclass
class Cleaned:
    """Conversations kept for training, the records left out (with reasons), and what was repaired."""

    kept: list[Conversation]
    rejects: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    conflicts: int = 0
    repairs: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        """One line for the run log."""
        return clean_summary(self.repairs, self.duplicates, self.conflicts)


def clean_summary(repairs: dict[str, int], duplicates: int, conflicts: int) -> str:
    """'12 trimmed whitespace, 6 exact duplicate(s) removed, ...' (empty when nothing happened)."""
    parts = [f"{n} {code.replace('_', ' ')}" for code, n in sorted(repairs.items())]
    parts += [f"{duplicates} exact duplicate(s) removed"] if duplicates else []
    parts += [f"{conflicts} reply/replies asserting the old identity left out"] if conflicts else []
    return ", ".join(parts)


def _old_identity(messages: list[dict[str, Any]], name: str, author: str | None) -> str | None:
    """The old name a reply or system prompt asserts (after removing the new name and author), if any."""
    new = sorted((t.casefold() for t in (name, author or "") if t and t.strip()), key=len, reverse=True)
    for msg in messages:
        if msg.get("role") not in ("assistant", "system") or not isinstance(msg.get("content"), str):
            continue
        text = msg["content"].casefold()
        for term in new:
            text = text.replace(term, "\x00")
        for old in OLD_NAMES:
            if old.casefold() in text:
                return old
    return None


class TrainingCleaner:
    """Applied to one file's conversations in order: repairs, exact-duplicate removal, identity conflicts."""

    def __init__(self, settings: CleanSettings) -> None:
        self.settings = settings
        self.first_seen: dict[bytes, str] = {}
        self.duplicates = 0
        self.conflicts = 0
        self.repairs: Counter = Counter()

    def __call__(self, conv: Conversation) -> tuple[Conversation | None, dict[str, Any] | None]:
        """The conversation to train on (repaired), or None and the reject row saying why."""
        s, messages = self.settings, conv.messages
        raw = json.dumps({"messages": conv.messages}, ensure_ascii=False)
        if s.repair:
            messages, repairs = repair_messages(conv.source, messages)
            self.repairs.update(r.code for r in repairs)
            key = hashlib.sha1(exact_key(messages).encode("utf-8")).digest()
            if key in self.first_seen:
                self.duplicates += 1
                return None, {"source": conv.source, "code": "duplicate", "counts_as_rejected": False,
                              "reason": f"exact duplicate of {self.first_seen[key]} (after repair); kept once",
                              "raw": raw}
            self.first_seen[key] = conv.source
        if s.name and s.drop_conflicts and (old := _old_identity(messages, s.name, s.author)):
            self.conflicts += 1
            return None, {"source": conv.source, "code": "identity_conflict",
                          "reason": f"asserts '{old}' while identity.name is '{s.name}' "
                                    "(identity.conflicts: warn keeps such samples)", "raw": raw}
        return Conversation(messages, conv.source, conv.extra), None

    def summary(self) -> str:
        """One line for the run log."""
        return clean_summary(self.repairs, self.duplicates, self.conflicts)


def clean_for_training(convs: list[Conversation], repair: bool, name: str | None, author: str | None,
                       drop_conflicts: bool) -> Cleaned:
    """Repair texts and turns, remove exact duplicates, and leave out replies that assert the old identity."""
    cleaner = TrainingCleaner(CleanSettings(repair, name, author, drop_conflicts))
    out = Cleaned(kept=[])
    for conv in convs:
        kept, reject = cleaner(conv)
        if kept is not None:
            out.kept.append(kept)
        else:
            out.rejects.append(reject or {})
    out.duplicates, out.conflicts, out.repairs = cleaner.duplicates, cleaner.conflicts, cleaner.repairs
    return out
