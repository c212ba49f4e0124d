"""OpenAI chat records (``messages`` with ``tool_calls``/``tool`` roles, top-level ``tools``) as GLM-4 messages."""

from __future__ import annotations

from typing import Any

from glmtune.data.conversation import REASONING_KEYS
from glmtune.data.formats.common import (
    Converted,
    Message,
    RecordError,
    attach_tools,
    call_message,
    copy_reasoning,
    lift_reasoning,
    parse_tools,
    record_extra,
    require_object,
)

NAME = "openai"
# OpenAI roles; GLM-4's own "observation" is accepted too, so GLM-4 records convert unchanged.
ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "observation",
    "function": "observation",  # the legacy function-result role
    "observation": "observation",
}
KEYS = ("messages", "tools", "functions")


def convert(record: Any) -> Converted:
    """Convert one OpenAI record; each tool call becomes its own GLM-4 function-call assistant message.

    An assistant turn's ``reasoning_content`` (or ``reasoning``) stays on its text message, or goes onto its
    first function call when the turn has no text."""
    record = require_object(record, "a 'messages' list")
    turns = record.get("messages")
    if not isinstance(turns, list) or not turns:
        raise RecordError("no_messages", "'messages' must be a non-empty list")
    messages: list[Message] = []
    for i, turn in enumerate(turns, start=1):
        messages.extend(_turn(turn, f"message {i}"))
    tools = parse_tools(record.get("tools")) + parse_tools(record.get("functions"))
    extra = record_extra(record, KEYS)
    return attach_tools(lift_reasoning(messages), tools), extra


def _turn(turn: Any, where: str) -> list[Message]:
    if not isinstance(turn, dict):
        raise RecordError("bad_message", f"{where} is not an object")
    tag = turn.get("role")
    role = ROLES.get(tag) if isinstance(tag, str) else None
    if role is None:
        raise RecordError("unknown_role", f"{where} has role {tag!r}; expected one of {', '.join(ROLES)}")
    content = _content(turn.get("content"), f"{where} ({tag})")
    out = copy_reasoning(turn, {"role": role, "content": content})
    if turn.get("tools") is not None:
        out["tools"] = parse_tools(turn["tools"])
    if role == "assistant" and turn.get("metadata"):
        out["metadata"] = turn["metadata"]  # already a GLM-4 function call
    calls = _calls(turn, where) if role == "assistant" else []
    if calls:
        out_list = [out] if content.strip() or _has_reasoning(out) else []
        out_list.extend(calls)
    else:
        out_list = [out]
    if turn.get("weight") == 0 or turn.get("loss") is False:
        for msg in out_list:
            msg["loss"] = False
    return out_list


def _has_reasoning(msg: Message) -> bool:
    values = [msg.get(key) for key in REASONING_KEYS]
    return any(v is not None and (not isinstance(v, str) or v.strip()) for v in values)


def _calls(turn: dict[str, Any], where: str) -> list[Message]:
    calls = turn.get("tool_calls")
    if calls is None and turn.get("function_call") is not None:  # legacy single call
        calls = [{"type": "function", "function": turn["function_call"]}]
    if calls is None:
        return []
    if not isinstance(calls, list):
        raise RecordError("bad_tool_call", f"{where} 'tool_calls' must be a list")
    out = []
    for i, call in enumerate(calls, start=1):
        label = f"{where} tool call {i}"
        if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
            raise RecordError("bad_tool_call", f"{label} must be an object with a 'function' object")
        if call.get("type", "function") != "function":
            raise RecordError("bad_tool_call", f"{label} has type {call.get('type')!r}; only 'function' is supported")
        fn = call["function"]
        out.append(call_message(fn.get("name"), fn.get("arguments"), label))
    return out


def _content(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: only text parts can be trained on
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise RecordError("unsupported_content", f"{where} has a content part of type {kind!r}; "
                                  "only text parts are supported")
        return "".join(texts)
    raise RecordError("bad_content", f"{where} content must be a string or a list of text parts, "
                      f"got {type(content).__name__}")
