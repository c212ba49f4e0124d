"""The conversation model every reader produces: GLM-4 message dicts plus where they came from."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "user", "assistant", "observation")


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
        if role == "assistant" and not content.strip():
            found.append(("empty_reply", f"{where} is an assistant message with empty content; "
                          "GLM-4's template renders nothing for it"))
        if role == "assistant" and msg.get("metadata"):
            try:
                json.loads(content)
            except (json.JSONDecodeError, TypeError):
                found.append(("bad_tool_call", f"{where} calls {msg['metadata']!r} but its content is not JSON"))
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
    """Keep only the keys GLM-4 knows, with ``content`` always present."""
    out: dict[str, Any] = {"role": msg["role"], "content": msg.get("content", "")}
    if msg.get("metadata"):
        out["metadata"] = msg["metadata"]
    if msg.get("tools"):
        out["tools"] = msg["tools"]
    if msg.get("loss") is False:
        out["loss"] = False
    return out
