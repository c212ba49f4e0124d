"""What reading a data file gives: ``ReadResult`` (kept conversations, and every unusable record as file:line
with a reason), the rejects file (``write_rejects``), and the plain line-by-line reader of GLM-4
``{"messages": [...]}`` JSONL (``read_glm4_jsonl``) that :func:`glmtune.data.read.read_any` agrees with.

Records in other formats and containers are converted by :mod:`glmtune.data.formats`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from glmtune.data.conversation import Conversation, Problem, check_messages, normalise_message
from glmtune.data.formats.containers import jsonl_lines
from glmtune.errors import DataError


@dataclass
class ReadResult:
    """Conversations that passed, and problems for the records that did not (nothing is dropped silently)."""

    conversations: list[Conversation] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    rejected_records: list[dict] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Records read: kept plus rejected."""
        return len(self.conversations) + len(self.rejected_records)


def read_glm4_jsonl(path: str | Path, need_reply: bool = True) -> ReadResult:
    """Parse a GLM-4 messages JSONL file; blank lines are ignored, every other line is kept or reported."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    result = ReadResult()
    for source, text, raw, bad in jsonl_lines(path):
        if text is None:
            _reject(result, source, "bad_encoding", bad or "", raw.decode("utf-8", errors="replace"))
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            _reject(result, source, "malformed_json", f"invalid JSON: {exc.msg} (column {exc.colno})", text)
            continue
        if not isinstance(record, dict) or "messages" not in record:
            _reject(result, source, "no_messages", "expected an object with a 'messages' list", text)
            continue
        found = check_messages(record["messages"], need_reply=need_reply)
        if found:
            code, reason = found[0]
            more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
            _reject(result, source, code, reason + more, text)
            continue
        messages = [normalise_message(m) for m in record["messages"]]
        extra = {k: v for k, v in record.items() if k != "messages"}
        result.conversations.append(Conversation(messages=messages, source=source, extra=extra))
    return result


def _reject(result: ReadResult, source: str, code: str, reason: str, raw: str) -> None:
    problem = Problem(source, code, reason)
    result.problems.append(problem)
    result.rejected_records.append({"source": source, "code": code, "reason": reason, "raw": raw.rstrip("\n")})


def write_rejects(rejects: list[dict], path: str | Path) -> None:
    """Write rejected records (with source line and reason) as JSONL, so nothing is lost."""
    from glmtune.data.outputs import atomic_write

    with atomic_write(path) as fh:
        for row in rejects:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
