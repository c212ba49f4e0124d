"""glmtune's conversation model (GLM-4 messages) in the message form a model's chat template reads.

glmtune keeps every conversation as GLM-4 messages: tools on a (system) message, a function call as an
assistant message with ``metadata`` = tool name and JSON arguments as content, a tool result as an
``observation``. Templates of other families read the Hugging Face generic form instead: top-level
``tools=[...]`` for ``apply_chat_template``, assistant ``tool_calls=[{"type": "function", "function":
{"name", "arguments"}}]`` and ``role: "tool"`` results. Which form a template reads is found by rendering
small probes with it, never from the model's name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from glmtune.layout.base import LayoutError, render

PROBE_NAME = "glmtune_probe_fn"  # the declared tool
PROBE_CALL = "glmtune_probe_call"  # the called one: its name can only show up through the call
PROBE_ARGS = {"glmtune_probe_arg": 12345}
PROBE_RESULT = "glmtune_probe_result"
PROBE_TOOLS = [{"type": "function", "function": {"name": PROBE_NAME, "description": "probe",
                                                 "parameters": {"type": "object", "properties": {}}}}]
_USER = {"role": "user", "content": "ping"}


@dataclass(frozen=True)
class Dialect:
    """The message form a chat template reads (found by probing it)."""

    tools_on_message: bool | None  # True: tools ride on a message (glm-4-9b-chat); False: top-level; None: none
    glm_calls: bool  # it renders GLM-4 calls (assistant ``metadata`` + JSON content)
    generic_calls: bool  # it renders assistant ``tool_calls``
    tool_role: str | None  # the role whose content it renders as a tool result: "observation", "tool", None
    parallel_calls: bool  # it renders several ``tool_calls`` in one assistant message

    @property
    def native(self) -> bool:
        """GLM-4 messages render as they are (glm-4-9b-chat)."""
        return bool(self.tools_on_message) and self.glm_calls and self.tool_role == "observation"


def _try(tokenizer: Any, messages: list[dict[str, Any]], **kwargs: Any) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)
    except Exception:  # a template that does not know this shape, or raises on it
        return ""


def generic_call(name: str, arguments: Any) -> dict[str, Any]:
    """One HF-generic tool call."""
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def probe_dialect(tokenizer: Any) -> Dialect:
    """Render probes with the tokenizer's template to learn which message form it reads."""
    on_message = [{"role": "system", "content": "", "tools": PROBE_TOOLS}, _USER]
    if PROBE_NAME in _try(tokenizer, on_message):
        tools_on_message: bool | None = True
        kwargs: dict[str, Any] = {}
    elif PROBE_NAME in _try(tokenizer, [_USER], tools=PROBE_TOOLS):
        tools_on_message, kwargs = False, {"tools": PROBE_TOOLS}
    else:
        tools_on_message, kwargs = None, {}
    glm_call = {"role": "assistant", "metadata": PROBE_CALL, "content": json.dumps(PROBE_ARGS)}
    generic = {"role": "assistant", "content": "", "tool_calls": [generic_call(PROBE_CALL, PROBE_ARGS)]}
    glm_calls = PROBE_CALL in _try(tokenizer, [_USER, glm_call], **kwargs)
    generic_calls = PROBE_CALL in _try(tokenizer, [_USER, generic], **kwargs)
    call = glm_call if glm_calls else generic
    # Templates that render any role name (Llama-3) take both: GLM-4 form keeps its own role.
    roles = ("observation", "tool") if glm_calls else ("tool", "observation")
    tool_role = next((role for role in roles
                      if PROBE_RESULT in _try(tokenizer, [_USER, call, {"role": role, "content": PROBE_RESULT}],
                                              **kwargs)), None)
    two = {"role": "assistant", "content": "", "tool_calls": [generic_call(PROBE_CALL, PROBE_ARGS)] * 2}
    parallel = generic_calls and _try(tokenizer, [_USER, two], **kwargs).count(PROBE_CALL) >= 2
    return Dialect(tools_on_message, glm_calls, generic_calls, tool_role, parallel)


def _arguments(message: dict[str, Any]) -> Any:
    try:
        return json.loads(message.get("content") or "{}")
    except json.JSONDecodeError:
        raise LayoutError(f"a call to {message['metadata']!r} has arguments that are not JSON: "
                          f"{message.get('content')!r}") from None


def to_template(messages: list[dict[str, Any]], dialect: Dialect
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """GLM-4 messages as ``(messages, tools)`` in the form the template reads; ``tools`` is the top-level
    argument (None when the template reads tools from a message or there are none)."""
    if dialect.native:
        return messages, None
    declared = [t for m in messages for t in (m.get("tools") or [])]
    uses_calls = any(m["role"] == "assistant" and m.get("metadata") for m in messages)
    uses_results = any(m["role"] == "observation" for m in messages)
    if declared and dialect.tools_on_message is None:
        raise LayoutError("this conversation declares tools, but the model's chat template renders no tool "
                          "definitions (neither on a message nor from the top-level `tools` argument)")
    if uses_calls and not (dialect.glm_calls or dialect.generic_calls):
        raise LayoutError("this conversation has tool calls, but the model's chat template renders neither "
                          "GLM-4 calls (`metadata`) nor `tool_calls`")
    if uses_results and dialect.tool_role is None:
        raise LayoutError("this conversation has tool results, but the model's chat template renders neither "
                          "an `observation` nor a `tool` message")
    out: list[dict[str, Any]] = []
    for message in messages:
        msg = dict(message)
        if not dialect.tools_on_message and msg.pop("tools", None) is not None:
            if msg["role"] == "system" and not msg.get("content"):
                continue  # an empty system message that only carried the tools
        if msg["role"] == "observation":
            msg["role"] = dialect.tool_role
        elif msg["role"] == "assistant" and msg.get("metadata") and not dialect.glm_calls:
            arguments = _arguments(msg)
            call = generic_call(msg.pop("metadata"), arguments)
            previous = out[-1] if out else None
            if (previous is not None and previous["role"] == "assistant" and not previous.get("metadata")
                    and previous.get("loss", True) == msg.get("loss", True)
                    and (dialect.parallel_calls or not previous.get("tool_calls"))):
                previous["tool_calls"] = [*previous.get("tool_calls", []), call]  # one turn, several calls
                if msg.get("reasoning_content") and not previous.get("reasoning_content"):
                    previous["reasoning_content"] = msg["reasoning_content"]
                continue
            msg["content"], msg["tool_calls"] = "", [call]
        out.append(msg)
    tools = declared if declared and dialect.tools_on_message is False else None
    return out, tools


def render_template(tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                    add_generation_prompt: bool = False, **template_kwargs: Any) -> str:
    """Render template-form messages (top-level tools, template switches such as ``enable_thinking``) to text."""
    if tools is None and not template_kwargs:
        return render(tokenizer, messages, add_generation_prompt)
    if tools is not None:
        template_kwargs["tools"] = tools
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                         **template_kwargs)
