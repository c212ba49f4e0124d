"""Alpaca records (``instruction``, ``input``, ``output``, ``system``, ``history``) as GLM-4 messages."""

from __future__ import annotations

from typing import Any

from glmtune.data.formats.common import (
    Converted,
    Message,
    RecordError,
    attach_tools,
    optional_text,
    parse_tools,
    record_extra,
    require_object,
)

NAME = "alpaca"
KEYS = ("instruction", "input", "output", "system", "history", "tools")


def convert(record: Any) -> Converted:
    """Convert one alpaca record; the user turn is ``instruction`` + "\\n" + ``input`` (LLaMA-Factory)."""
    record = require_object(record, "'instruction' and 'output'")
    for key in ("instruction", "output"):
        if key not in record or record[key] is None:
            raise RecordError("missing_field", f"alpaca record has no '{key}'")
    instruction = optional_text(record, "instruction")
    output = optional_text(record, "output")
    prompt = "\n".join(part for part in (instruction, optional_text(record, "input")) if part)
    if not prompt.strip():
        raise RecordError("empty_prompt", "alpaca record has an empty 'instruction' and 'input'")
    messages: list[Message] = []
    system = optional_text(record, "system")
    if system:
        messages.append({"role": "system", "content": system})
    messages.extend(_history(record.get("history")))
    messages.append({"role": "user", "content": prompt})
    messages.append({"role": "assistant", "content": output})
    messages = attach_tools(messages, parse_tools(record.get("tools")))
    extra = record_extra(record, KEYS)
    return messages, extra


def _history(history: Any) -> list[Message]:
    if history is None:
        return []
    if not isinstance(history, list):
        raise RecordError("bad_field", "'history' must be a list of [user, assistant] pairs")
    out: list[Message] = []
    for i, pair in enumerate(history, start=1):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise RecordError("bad_field", f"'history' entry {i} must be a [user, assistant] pair of strings")
        out.append({"role": "user", "content": pair[0]})
        out.append({"role": "assistant", "content": pair[1]})
    return out
