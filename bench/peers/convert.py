"""Reading GLM-4 messages JSONL for the peers, and the error raised for a conversation a peer cannot express."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class ConversionError(ValueError):
    """A conversation that a peer's data format cannot express (the reason says why)."""


def read_glm4_jsonl(path: str | Path) -> list[list[dict[str, Any]]]:
    """The ``messages`` lists of a GLM-4 messages JSONL file, with ``file:line`` in every error."""
    conversations = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not JSON ({e})") from None
        messages = record.get("messages") if isinstance(record, dict) else None
        if not isinstance(messages, list) or not messages:
            raise ValueError(f"{path}:{n}: expected an object with a non-empty 'messages' list")
        conversations.append(messages)
    return conversations


def call_arguments(message: dict[str, Any]) -> Any:
    """The JSON arguments of a GLM-4 function call (an assistant message with ``metadata``)."""
    try:
        return json.loads(message.get("content") or "{}")
    except json.JSONDecodeError:
        raise ConversionError(f"function call {message['metadata']!r} has arguments that are not JSON") from None


def convert_file(path: str | Path, convert: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Convert every conversation of a GLM-4 JSONL file; return (records, skipped with their reasons)."""
    records, skipped = [], []
    for i, messages in enumerate(read_glm4_jsonl(path), start=1):
        try:
            records.append(convert(messages))
        except ConversionError as e:
            skipped.append({"conversation": i, "reason": str(e)})
    return records, skipped
