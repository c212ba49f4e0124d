"""How a chat template handles reasoning, found by rendering probes with it (never from a model's name).

Three things decide how a thinking reply is laid out:

- ``reads_reasoning``: the template renders an assistant's ``reasoning_content`` (GLM-4.5/4.6), so the last
  reply's reasoning comes out of the template itself, and past replies' reasoning the way it renders them;
- ``opens_think``: its generation prompt opens a ``<think>`` block that its rendered replies lack (GLM-Z1).
  The reply the model writes after that prompt is ``{reasoning}</think>\\n{answer}``, the same text GLM-4.5's
  template renders inside its think block, so the last reply is the generation prompt plus that text;
- ``nothink_switch``: ``enable_thinking=False`` changes its rendering (``/nothink``, an empty think block).

A template with none of them has no thinking (glm-4-9b-chat, GLM-4-0414): reasoning is dropped, the answer
trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from glmtune.data.conversation import split_think

OPEN, CLOSE = "<think>", "</think>"
PROBE_REASONING = "glmtune_probe_reasoning"
_USER = {"role": "user", "content": "ping"}


def _render(tokenizer: Any, messages: list[dict[str, Any]], **kwargs: Any) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)
    except Exception:  # a template that raises on this shape does not support it
        return ""


@dataclass(frozen=True)
class Thinking:
    """The reasoning behaviour of one chat template."""

    reads_reasoning: bool
    opens_think: bool
    nothink_switch: bool

    @property
    def thinks(self) -> bool:
        """The template has thinking at all."""
        return self.reads_reasoning or self.opens_think


def probe_thinking(tokenizer: Any) -> Thinking:
    """Render probes with ``tokenizer``'s template to learn how it handles reasoning."""
    reply = {"role": "assistant", "content": "pong", "reasoning_content": PROBE_REASONING}
    reads = PROBE_REASONING in _render(tokenizer, [_USER, reply])
    bare = _render(tokenizer, [_USER])
    prompt = _render(tokenizer, [_USER], add_generation_prompt=True)
    tail = prompt[len(bare):] if prompt.startswith(bare) else prompt
    opens = OPEN in tail and CLOSE not in tail
    off = _render(tokenizer, [_USER], add_generation_prompt=True, enable_thinking=False)
    return Thinking(reads, opens, bool(off) and off != prompt)


def generated_reply(answer: str, reasoning: str | None) -> str:
    """What a model whose generation prompt opened ``<think>`` writes: reasoning, ``</think>``, the answer."""
    return f"{(reasoning or '').strip()}{CLOSE}\n{answer.strip()}"


def with_reasoning_field(message: dict[str, Any]) -> dict[str, Any]:
    """``message`` with inline reasoning moved to ``reasoning_content`` (assistant messages only)."""
    content = message.get("content")
    if message.get("role") != "assistant" or not isinstance(content, str) or message.get("reasoning_content"):
        return message
    parts = split_think(content)
    if parts is None:
        return message
    reasoning, answer = parts
    out = {**message, "content": answer}
    if reasoning:
        out["reasoning_content"] = reasoning
    return out


def template_kwargs(messages: list[dict[str, Any]], thinking: Thinking) -> dict[str, Any]:
    """``enable_thinking=False`` for a conversation marked non-thinking, when the template has that switch."""
    if thinking.nothink_switch and any(m.get("enable_thinking") is False for m in messages):
        return {"enable_thinking": False}
    return {}
