"""The repairs and filters a training run applies on its own: what `data check --fix` would do, plus identity."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from glmtune.data.conversation import Conversation
from glmtune.data.identity_guard import OLD_NAMES
from glmtune.data.repair import exact_key, repair_messages


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
        parts = [f"{n} {code.replace('_', ' ')}" for code, n in sorted(self.repairs.items())]
        parts += [f"{self.duplicates} exact duplicate(s) removed"] if self.duplicates else []
        parts += [f"{self.conflicts} reply/replies asserting the old identity left out"] if self.conflicts else []
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


def clean_for_training(convs: list[Conversation], repair: bool, name: str | None, author: str | None,
                       drop_conflicts: bool) -> Cleaned:
    """Repair texts and turns, remove exact duplicates, and leave out replies that assert the old identity."""
    out = Cleaned(kept=[])
    first_seen: dict[str, str] = {}
    for conv in convs:
        messages = conv.messages
        if repair:
            messages, repairs = repair_messages(conv.source, messages)
            out.repairs.update(r.code for r in repairs)
            key = exact_key(messages)
            if key in first_seen:
                out.duplicates += 1
                out.rejects.append({"source": conv.source, "code": "duplicate", "counts_as_rejected": False,
                                    "reason": f"exact duplicate of {first_seen[key]} (after repair); kept once",
                                    "raw": json.dumps({"messages": conv.messages}, ensure_ascii=False)})
                continue
            first_seen[key] = conv.source
        if name and drop_conflicts and (old := _old_identity(messages, name, author)):
            out.conflicts += 1
            out.rejects.append({"source": conv.source, "code": "identity_conflict",
                                "reason": f"asserts '{old}' while identity.name is '{name}' "
                                          "(identity.conflicts: warn keeps such samples)",
                                "raw": json.dumps({"messages": conv.messages}, ensure_ascii=False)})
            continue
        out.kept.append(Conversation(messages, conv.source, conv.extra))
    return out
