"""Helpers shared by the record converters: the per-record error, tool schemas and function calls."""

from __future__ import annotations

import json
from typing import Any

from glmtune.data.conversation import REASONING_KEYS, message_reasoning

Message = dict[str, Any]
Converted = tuple[list[Message], dict[str, Any]]  # (GLM-4 messages, record keys the format does not use)
TEMPLATE_KWARGS = "chat_template_kwargs"  # the vLLM/OpenAI-compatible request field


class RecordError(Exception):
    """One record cannot be converted; ``code`` is the machine-readable reason."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def require_object(record: Any, expected: str) -> dict[str, Any]:
    """Return ``record`` if it is a JSON object, else raise ``not_an_object``."""
    if not isinstance(record, dict):
        raise RecordError("not_an_object", f"expected an object with {expected}, got {_kind(record)}")
    return record


def optional_text(record: dict[str, Any], key: str) -> str:
    """Return an optional string field ('' when absent or null); anything else is ``bad_field``."""
    value = record.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RecordError("bad_field", f"'{key}' must be a string, got {_kind(value)}")
    return value


def parse_tools(value: Any) -> list[dict[str, Any]]:
    """Turn a ``tools`` value (JSON string or list of schemas) into GLM-4 ``{"type": "function", ...}`` tools."""
    if value is None:
        return []
    if isinstance(value, str):
        if not value.strip():
            return []
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as exc:
            raise RecordError("bad_tools", f"'tools' is a string but not valid JSON ({exc})") from None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise RecordError("bad_tools", f"'tools' must be a list of function schemas, got {_kind(value)}")
    return [_glm4_tool(tool, i) for i, tool in enumerate(value, start=1)]


def _glm4_tool(tool: Any, index: int) -> dict[str, Any]:
    if not isinstance(tool, dict):
        raise RecordError("bad_tools", f"tool {index} must be an object, got {_kind(tool)}")
    if tool.get("type") == "function" and isinstance(tool.get("function"), dict):
        if not _is_name(tool["function"].get("name")):
            raise RecordError("bad_tools", f"tool {index} has no function name")
        return tool
    if "name" in tool:
        if not _is_name(tool["name"]):
            raise RecordError("bad_tools", f"tool {index} has a bad name {tool['name']!r}")
        return {"type": "function", "function": tool}
    if isinstance(tool.get("type"), str) and tool["type"] != "function":
        return tool  # a GLM-4 built-in tool such as {"type": "python"}
    raise RecordError("bad_tools", f"tool {index} is neither a function schema nor a typed tool")


def attach_tools(messages: list[Message], tools: list[dict[str, Any]]) -> list[Message]:
    """Put ``tools`` on the leading system message, creating an empty one if needed (GLM-4 convention)."""
    if not tools:
        return messages
    if messages and messages[0].get("role") == "system":
        first = dict(messages[0])
        first["tools"] = list(first.get("tools") or []) + tools
        return [first, *messages[1:]]
    return [{"role": "system", "content": "", "tools": tools}, *messages]


def call_message(name: Any, arguments: Any, where: str) -> Message:
    """Build a GLM-4 function-call message: assistant, ``metadata`` = name, content = arguments JSON."""
    if not _is_name(name):
        raise RecordError("bad_tool_call", f"{where} has no function name")
    return {"role": "assistant", "metadata": name, "content": arguments_json(arguments, where)}


def arguments_json(arguments: Any, where: str) -> str:
    """Serialise call arguments (an object, or a string holding one) as ``json.dumps(..., ensure_ascii=False)``.

    Null or blank arguments are ``{}``; anything that is not a JSON object is ``bad_tool_arguments`` (the
    GLM-4.5/4.6 templates iterate the arguments as a mapping)."""
    if arguments is None or isinstance(arguments, str) and not arguments.strip():
        return "{}"
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except (ValueError, RecursionError):
            raise RecordError("bad_tool_arguments",
                              f"{where} arguments are a string but not JSON: {_preview(arguments)}") from None
    if not isinstance(arguments, dict):
        raise RecordError("bad_tool_arguments", f"{where} arguments must be a JSON object of named arguments, "
                          f"got {_kind(arguments)}")
    try:
        return json.dumps(arguments, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise RecordError("bad_tool_arguments", f"{where} arguments cannot be written as JSON ({exc})") from None


def parse_call(value: Any, where: str) -> list[Message]:
    """Parse a sharegpt-style call ``{"name", "arguments"}`` (JSON string, object or list) into messages."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise RecordError("bad_tool_call", f"{where} is not JSON {{\"name\", \"arguments\"}}: "
                              f"{_preview(value)}") from None
    calls = value if isinstance(value, list) else [value]
    if not calls:
        raise RecordError("bad_tool_call", f"{where} is an empty list of calls")
    out = []
    for i, call in enumerate(calls, start=1):
        label = where if len(calls) == 1 else f"{where} call {i}"
        if not isinstance(call, dict):
            raise RecordError("bad_tool_call", f"{label} must be an object with 'name' and 'arguments'")
        out.append(call_message(call.get("name"), call.get("arguments"), label))
    return out


def copy_reasoning(turn: dict[str, Any], message: Message) -> Message:
    """``message`` with the turn's ``reasoning_content``/``reasoning`` fields (checked later, with the rest)."""
    for key in REASONING_KEYS:
        if turn.get(key) is not None:
            message[key] = turn[key]
    return message


def lift_reasoning(messages: list[Message]) -> list[Message]:
    """Fold a reply that holds only reasoning into the function call right after it: the call's reasoning."""
    out: list[Message] = []
    for msg in messages:
        prev = out[-1] if out else None
        if prev is not None and msg.get("metadata") and _reasoning_only(prev) and prev.get("loss") == msg.get(
                "loss") and not any(msg.get(k) for k in REASONING_KEYS):
            out[-1] = {**msg, "reasoning_content": message_reasoning(prev)[0]}
            continue
        out.append(msg)
    return out


def _reasoning_only(msg: Message) -> bool:
    if msg.get("role") != "assistant" or set(msg) - {"role", "content", "loss", *REASONING_KEYS}:
        return False
    reasoning, answer, problem = message_reasoning(msg)
    return bool(reasoning) and not answer.strip() and problem is None


def record_extra(record: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The record's keys outside ``keys``, with a thinking switch read into ``extra["enable_thinking"]``.

    The switch is a top-level ``enable_thinking`` or ``chat_template_kwargs.enable_thinking`` (which is moved
    out of ``chat_template_kwargs``); it must be a boolean, and the two must agree."""
    extra = {k: v for k, v in record.items() if k not in keys}
    flags: dict[str, Any] = {}
    if "enable_thinking" in extra:
        flags["enable_thinking"] = extra.pop("enable_thinking")
    kwargs = extra.get(TEMPLATE_KWARGS)
    if isinstance(kwargs, dict) and "enable_thinking" in kwargs:
        flags[f"{TEMPLATE_KWARGS}.enable_thinking"] = kwargs["enable_thinking"]
        rest = {k: v for k, v in kwargs.items() if k != "enable_thinking"}
        if rest:
            extra[TEMPLATE_KWARGS] = rest
        else:
            del extra[TEMPLATE_KWARGS]
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise RecordError("bad_field", f"'{key}' must be true or false, got {_kind(value)}")
    if len(set(flags.values())) > 1:
        raise RecordError("bad_field", "'enable_thinking' and "
                          f"'{TEMPLATE_KWARGS}.enable_thinking' disagree")
    if flags:
        extra["enable_thinking"] = next(iter(flags.values()))
    return extra


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _preview(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__)
