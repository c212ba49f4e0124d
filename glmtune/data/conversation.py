"""The conversation model every reader produces: GLM-4 message dicts plus where they came from."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "user", "assistant", "observation")
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
# Where an assistant message may carry its reasoning: the OpenAI/vLLM field, and its short alias.
REASONING_KEYS = ("reasoning_content", "reasoning")


@dataclass
class Problem:
    """One reason a record cannot be used, with the place it came from."""

    source: str  # "path:line" (1-based line), or "path:record N" for whole-file formats
    code: str  # short machine-readable reason code, e.g. "malformed_json", "unknown_role"
    reason: str  # human-readable explanation

    def __str__(self) -> str:
        return f"{self.source}: [{self.code}] {self.reason}"


@dataclass
class Conversation:
    """A validated GLM-4 conversation: ``messages`` is exactly what ``apply_chat_template`` takes."""

    messages: list[dict[str, Any]]
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def prompt_and_reference(self) -> tuple[list[dict[str, Any]], str | None]:
        """Split into the prompt (everything before the last assistant turn) and that turn's text."""
        for i in range(len(self.messages) - 1, -1, -1):
            if self.messages[i]["role"] == "assistant":
                return self.messages[:i], self.messages[i].get("content", "")
        return list(self.messages), None


def check_messages(messages: Any, need_reply: bool = True) -> list[tuple[str, str]]:
    """Return (code, reason) for every structural problem in a GLM-4 ``messages`` list."""
    if not isinstance(messages, list) or not messages:
        return [("no_messages", "'messages' must be a non-empty list")]
    found: list[tuple[str, str]] = []
    for i, msg in enumerate(messages):
        where = f"message {i + 1}"
        if not isinstance(msg, dict):
            found.append(("bad_message", f"{where} is not an object"))
            continue
        role = msg.get("role")
        if role not in ROLES:
            found.append(("unknown_role", f"{where} has role {role!r}; expected one of {', '.join(ROLES)}"))
            continue
        content = msg.get("content", "")
        if not isinstance(content, str):
            found.append(("bad_content", f"{where} ({role}) content must be a string, got {type(content).__name__}"))
            continue
        if "tools" in msg and not isinstance(msg["tools"], list):
            found.append(("bad_tools", f"{where} ({role}) 'tools' must be a list"))
        if "metadata" in msg and msg["metadata"] is not None and not isinstance(msg["metadata"], str):
            found.append(("bad_metadata", f"{where} ({role}) 'metadata' must be a string (the function name)"))
        reasoning, answer, problem = message_reasoning(msg)
        if problem:
            found.append((problem[0], f"{where} ({role}) {problem[1]}"))
        if role == "assistant" and not answer.strip():
            why = ("reasoning but no answer after it; a thinking reply still needs an answer" if reasoning
                   else "empty content; GLM-4's template renders nothing for it")
            found.append(("empty_reply", f"{where} is an assistant message with {why}"))
        if role == "assistant" and msg.get("metadata") and not is_json_object(content):
            found.append(("bad_tool_arguments", f"{where} calls {msg['metadata']!r} but its content is not a "
                          "JSON object of arguments"))
    if not found:
        found.extend(role_order([m["role"] for m in messages]))
    if need_reply and not found and not any(m.get("role") == "assistant" for m in messages):
        found.append(("no_reply", "conversation has no assistant reply to train on"))
    return found


def role_order(roles: list[str], numbers: list[int] | None = None) -> list[tuple[str, str]]:
    """(code, reason) when the turns after the system prompt do not start with a user turn, or none is a user."""
    numbers = numbers or list(range(1, len(roles) + 1))
    if "user" not in roles:
        return [("no_user_turn", "conversation has no user turn; a reply needs a prompt to answer "
                 f"(roles: {', '.join(roles) or 'none'})")]
    first = next(((n, r) for n, r in zip(numbers, roles) if r != "system"), None)
    if first is not None and first[1] != "user":
        return [("assistant_first" if first[1] == "assistant" else "bad_role_order",
                 f"the first turn (after any system prompt) is message {first[0]}, {first[1]!r}; "
                 "a conversation must start with a user turn")]
    return []


def normalise_message(msg: dict[str, Any]) -> dict[str, Any]:
    """Keep only the keys GLM-4 knows, ``content`` always present, inline reasoning in ``reasoning_content``."""
    reasoning, answer, _ = message_reasoning(msg)
    out: dict[str, Any] = {"role": msg["role"], "content": answer}
    if reasoning:
        out["reasoning_content"] = reasoning
    if msg.get("metadata"):
        out["metadata"] = msg["metadata"]
    if msg.get("tools"):
        out["tools"] = msg["tools"]
    if msg.get("loss") is False:
        out["loss"] = False
    return out


def split_think(content: str) -> tuple[str, str] | None:
    """(reasoning, answer) of text with inline ``<think>...</think>`` reasoning, or None when it has none.

    The answer is what follows the last ``</think>`` (as the GLM-Z1 and GLM-4.5 templates split it), less
    its leading newlines; the reasoning is what precedes it, less an opening ``<think>``, stripped."""
    head, close, tail = content.rpartition(THINK_CLOSE)
    if not close:
        return None
    head = head.lstrip()
    return head.removeprefix(THINK_OPEN).strip(), tail.lstrip("\r\n")


def message_reasoning(msg: dict[str, Any]) -> tuple[str, str, tuple[str, str] | None]:
    """(reasoning, answer, problem) of a message: reasoning from its field or inline ``<think>``; '' if none.

    ``problem`` is (code, reason) when the reasoning is not a string, sits on a non-assistant message, or is
    given twice (``reasoning_twice``); the answer is then the content as it is."""
    content = msg.get("content", "")
    content = content if isinstance(content, str) else ""
    given: dict[str, str] = {}
    for key in REASONING_KEYS:
        value = msg.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            return "", content, ("bad_reasoning", f"'{key}' must be a string, got {type(value).__name__}")
        if value.strip():
            given[key] = value.strip()
    if msg.get("role") != "assistant":
        if given:
            return "", content, ("bad_reasoning", f"has '{next(iter(given))}', but only assistant messages "
                                 "carry reasoning")
        return "", content, None
    if len(set(given.values())) > 1:
        return "", content, ("reasoning_twice", "has both 'reasoning_content' and 'reasoning', and they differ")
    field_reasoning = next(iter(given.values()), "")
    inline = None if msg.get("metadata") else split_think(content)
    if inline is None:
        return field_reasoning, content, None
    if field_reasoning and inline[0]:
        return "", content, ("reasoning_twice", f"has reasoning in '{next(iter(given))}' and inline "
                             f"{THINK_OPEN}...{THINK_CLOSE} in its content; keep one")
    return field_reasoning or inline[0], inline[1], None


def is_json_object(text: Any) -> bool:
    """True when ``text`` is a string holding a JSON object (what a function call's arguments must be)."""
    try:
        return isinstance(text, str) and isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        return False
