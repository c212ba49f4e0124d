"""ShareGPT records (LLaMA-Factory style ``conversations`` of ``from``/``value``) as GLM-4 messages."""

from __future__ import annotations

from typing import Any

from glmtune.data.formats.common import (
    Converted,
    Message,
    RecordError,
    attach_tools,
    copy_reasoning,
    lift_reasoning,
    optional_text,
    parse_call,
    parse_tools,
    record_extra,
    require_object,
)

NAME = "sharegpt"
CALL = "function_call"
# LLaMA-Factory's default tags plus the role/content ("openai-like") tags it also accepts.
ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "observation": "observation",
    "tool": "observation",
    CALL: CALL,
}
MESSAGE_KEYS = ("conversations", "messages")
KEYS = (*MESSAGE_KEYS, "system", "tools")


def convert(record: Any) -> Converted:
    """Convert one sharegpt record; ``function_call`` turns become assistant messages with ``metadata``.

    A turn's ``reasoning_content`` (or ``reasoning``) is kept; a ``gpt`` turn that holds only reasoning
    hands it to the ``function_call`` right after it."""
    record = require_object(record, "a 'conversations' list")
    key = next((k for k in MESSAGE_KEYS if k in record), None)
    if key is None:
        raise RecordError("no_messages", "sharegpt record has no 'conversations' (or 'messages') list")
    turns = record[key]
    if not isinstance(turns, list) or not turns:
        raise RecordError("no_messages", f"'{key}' must be a non-empty list")
    messages: list[Message] = []
    for i, turn in enumerate(turns, start=1):
        messages.extend(_turn(turn, f"message {i}"))
    system = optional_text(record, "system")
    messages = lift_reasoning(messages)
    extra = record_extra(record, KEYS)
    if system:
        if messages and messages[0]["role"] == "system":
            extra["system"] = system  # the conversation's own system message wins, as in LLaMA-Factory
        else:
            messages.insert(0, {"role": "system", "content": system})
    messages = attach_tools(messages, parse_tools(record.get("tools")))
    return messages, extra


def _turn(turn: Any, where: str) -> list[Message]:
    if not isinstance(turn, dict):
        raise RecordError("bad_message", f"{where} is not an object")
    tag = turn["from"] if "from" in turn else turn.get("role")
    role = ROLES.get(tag) if isinstance(tag, str) else None
    if role is None:
        raise RecordError("unknown_role", f"{where} has from={tag!r}; expected one of {', '.join(ROLES)}")
    value = turn["value"] if "value" in turn else turn.get("content")
    if role == CALL:
        calls = parse_call(value, f"{where} ({CALL})")
        return [copy_reasoning(turn, calls[0]), *calls[1:]]
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise RecordError("bad_content", f"{where} ({tag}) value must be a string, got {type(value).__name__}")
    return [copy_reasoning(turn, {"role": role, "content": value})]
