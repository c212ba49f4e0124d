"""OpenAI tools and tool calls <-> GLM-4 function calls.

Requests: ``tools`` go on the leading system message (GLM-4 convention; an empty system message is created
when there is none), ``tool`` messages become ``observation`` turns, and an assistant message's
``tool_calls`` become GLM-4 function-call messages (``metadata`` = name, content = JSON arguments), its
``reasoning_content`` staying on it (on its first call when it has no text). The
mapping is the training converter's (:mod:`glmtune.data.formats.openai`), so a served model sees exactly
the bytes it was fine-tuned on. ``tool_choice="none"`` leaves the tools out of the prompt.

Replies: GLM-4 writes a call as ``{name}\\n{json arguments}`` right after ``<|assistant|>`` and ends it
with ``<|observation|>``, while a plain reply starts with ``\\n``. The reply is decoded with special tokens
skipped (the name line is plain text and the end token is cut off before decoding); when its first line is
exactly the name of a declared tool and the rest parses as a JSON object, it is a tool call. Other families'
syntaxes (Qwen's and Llama's JSON, GLM-4.5's XML) are derived from the template in
:mod:`glmtune.serve.tool_syntax`.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from glmtune.data.formats.common import RecordError
from glmtune.data.formats.openai import convert
from glmtune.serve.schemas import APIError, ChatCompletionRequest, FunctionCall, ToolCall

Decision = Literal["tool", "text"]


def offered_tools(request: ChatCompletionRequest) -> list[dict[str, Any]]:
    """The request's function tools as GLM-4 tool dicts; empty when ``tool_choice`` is ``none``."""
    if not request.tools or request.tool_choice == "none":
        return []
    out = []
    for tool in request.tools:
        function = tool.function.model_dump(exclude_none=True)
        function.pop("strict", None)  # an OpenAI-only flag; GLM-4 was never trained on it
        out.append({"type": "function", "function": function})
    return out


def tool_names(tools: list[dict[str, Any]]) -> list[str]:
    """Names of the function tools in a GLM-4 tool list."""
    return [t["function"]["name"] for t in tools if t.get("type") == "function"]


def check_tool_messages(request: ChatCompletionRequest) -> None:
    """Reject (400) a ``tool`` message that does not answer a call of the assistant message just before it."""
    open_ids: set[str] = set()  # the calls of the latest assistant message, while only tool messages follow
    for i, message in enumerate(request.messages):
        if message.role != "tool":
            open_ids = {c.id for c in message.tool_calls or []} if message.role == "assistant" else set()
            continue
        if not open_ids:
            raise APIError(400, "messages with role 'tool' must be a response to a preceding message with "
                           "'tool_calls'", param=f"messages.[{i}].role", code="invalid_tool_message")
        if not message.tool_call_id:
            raise APIError(400, f"Missing required parameter: 'messages.[{i}].tool_call_id'",
                           param=f"messages.[{i}].tool_call_id", code="missing_required_parameter")
        if message.tool_call_id not in open_ids:
            raise APIError(400, f"'tool_call_id' of '{message.tool_call_id}' not found in 'tool_calls' of the "
                           "previous assistant message", param=f"messages.[{i}].tool_call_id",
                           code="invalid_tool_call_id")


def glm4_messages(request: ChatCompletionRequest) -> list[dict[str, Any]]:
    """The request's conversation (and offered tools) as GLM-4 messages for the chat template."""
    check_tool_messages(request)
    tools = offered_tools(request)
    record: dict[str, Any] = {"messages": [m.model_dump(exclude_none=True) for m in request.messages]}
    if tools:
        record["tools"] = tools
    try:
        messages, _ = convert(record)
    except RecordError as exc:
        raise APIError(400, f"messages: {exc.reason}", param="messages", code=exc.code) from None
    if not any(m.get("content") for m in messages):
        raise APIError(400, "messages: every message is empty", param="messages")
    return [_reasoning_field(m) for m in messages]


def _reasoning_field(message: dict[str, Any]) -> dict[str, Any]:
    """``message`` with a ``reasoning`` alias moved to ``reasoning_content`` (the field templates read)."""
    if "reasoning" not in message:
        return message
    out = dict(message)
    reasoning = out.pop("reasoning")
    if reasoning and not out.get("reasoning_content"):
        out["reasoning_content"] = reasoning
    return out


def classify(text: str, names: list[str]) -> Decision | None:
    """Whether a reply that starts with ``text`` is a tool call, plain text, or still undecided (None)."""
    if not names:
        return "text"
    head, newline, _ = text.partition("\n")
    head = head.strip()
    if newline:
        return "tool" if head in names else "text"
    if not head:
        return None if not text else "text"  # leading spaces: never a tool name
    return None if any(name.startswith(head) for name in names) else "text"


def parse_tool_call(text: str, names: list[str]) -> ToolCall | None:
    """Parse ``{name}\\n{json object}`` into a tool call when ``name`` is declared; otherwise None."""
    head, newline, rest = text.partition("\n")
    name = head.strip()
    if not newline or name not in names:
        return None
    try:
        arguments = json.loads(rest.strip())
    except (ValueError, RecursionError):
        return None
    if not isinstance(arguments, dict):
        return None
    return ToolCall(function=FunctionCall(name=name, arguments=json.dumps(arguments, ensure_ascii=False)))
