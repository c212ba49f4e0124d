"""A generated reply as text: decoded with the family's markup tags kept, and split into reasoning and answer.

Servers and tools decode a reply with special tokens skipped, but some families write their reasoning and
tool calls with special tokens (GLM-4.5's ``<think>``, ``<tool_call>``, ``<arg_key>``...). Which of them a
reply writes as markup is found by rendering probe replies with the chat template (never from a model's
name): those are kept, every other special token (role tokens, stop ids, padding) is dropped.

A thinking reply comes in one of two shapes:

- ``tagged``: ``<think>{reasoning}</think>{answer}`` (GLM-4.5/4.6, Qwen3), the think block optional;
- ``open``: the generation prompt already opened ``<think>`` (GLM-Z1), so the reply is
  ``{reasoning}</think>{answer}``.

:func:`split_reasoning` is the one split every consumer uses (predict, eval, chat, serve).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from glmtune.data.conversation import THINK_CLOSE, THINK_OPEN, split_think
from glmtune.layout.messages import PROBE_ARGS, PROBE_CALL, PROBE_TOOLS, render_template

OPEN, CLOSE = THINK_OPEN, THINK_CLOSE
ReasoningMode = Literal["tagged", "open"] | None
_USER = {"role": "user", "content": "ping"}


def probe_call_text(layout: Any, tokenizer: Any) -> str | None:
    """How the template writes a probe tool call after its generation prompt (raw text, special tokens
    included); where the prompt is not how it renders the call turn (GLM-Z1's forced ``<think>``), the call
    turn as rendered after the conversation. None when the template renders no call."""
    messages = [{"role": "system", "content": "", "tools": PROBE_TOOLS}, _USER,
                {"role": "assistant", "metadata": PROBE_CALL, "content": json.dumps(PROBE_ARGS)}]
    try:
        shown, tools = layout.to_template(messages)
        prompt = render_template(tokenizer, shown[:-1], tools, add_generation_prompt=True)
        full = render_template(tokenizer, shown, tools)
        if not full.startswith(prompt):
            prompt = render_template(tokenizer, shown[:-1], tools)
    except Exception:  # a template without tool calls
        return None
    return full[len(prompt):] if full.startswith(prompt) else None


def _reply_after_prompt(layout: Any, tokenizer: Any, messages: list[dict[str, Any]]) -> str:
    """What the template renders after the generation prompt for the last (assistant) message; '' if not a prefix."""
    try:
        shown, tools = layout.to_template(messages)
        prompt = render_template(tokenizer, shown[:-1], tools, add_generation_prompt=True)
        full = render_template(tokenizer, shown, tools)
    except Exception:  # a template that refuses the probe
        return ""
    return full[len(prompt):] if full.startswith(prompt) else ""


def kept_special_ids(layout: Any, tokenizer: Any) -> frozenset[int]:
    """Special tokens that a reply writes as markup (think and tool-call tags): decoding must keep them."""
    special = set(tokenizer.all_special_ids) - set(layout.stop_ids)
    if not special:
        return frozenset()
    call = [{"role": "system", "content": "", "tools": PROBE_TOOLS}, _USER,
            {"role": "assistant", "metadata": PROBE_CALL, "content": json.dumps(PROBE_ARGS)}]
    thought = [_USER, {"role": "assistant", "content": "pong", "reasoning_content": "hmm"}]
    texts = [_reply_after_prompt(layout, tokenizer, call), _reply_after_prompt(layout, tokenizer, thought)]
    if layout.thinks:
        texts += [OPEN, CLOSE]
    ids = {i for text in texts if text for i in tokenizer(text, add_special_tokens=False)["input_ids"]}
    return frozenset(ids & special)


class ReplyDecoder:
    """Decode reply ids with special tokens skipped except the ``keep`` ones; usable as a streamer's tokenizer."""

    def __init__(self, tokenizer: Any, keep: frozenset[int] = frozenset()) -> None:
        self.tokenizer = tokenizer
        self.keep = keep
        self._drop = set(tokenizer.all_special_ids) - set(keep)

    def decode(self, ids: Any, **_: Any) -> str:
        """Text of ``ids`` (a list, a 1-D tensor or one id)."""
        ids = ids.tolist() if hasattr(ids, "tolist") else ids
        ids = [int(i) for i in ids] if isinstance(ids, list) else [int(ids)]
        if not self.keep:
            return self.tokenizer.decode(ids, skip_special_tokens=True)
        return self.tokenizer.decode([i for i in ids if i not in self._drop], skip_special_tokens=False)


def reasoning_mode(layout: Any) -> ReasoningMode:
    """How a reply lays out its reasoning: None for a template without thinking, ``open`` when the generation
    prompt opens the think block (the layout's probe), else ``tagged``."""
    if not layout.thinks:
        return None
    thinking = getattr(layout, "thinking", None)
    return "open" if thinking is not None and thinking.opens_think else "tagged"


def partial_reasoning(text: str, mode: ReasoningMode) -> tuple[str, str | None]:
    """(reasoning so far, answer so far) of a reply still being written; the answer is None while the
    reasoning is open or a think block may still start. The answer keeps its leading whitespace unless it
    follows a think block."""
    if mode is None:
        return "", text
    if mode == "tagged":
        head = text.lstrip()
        if not head.startswith(OPEN):
            return ("", None) if OPEN.startswith(head) else ("", text)
        text = head[len(OPEN):]
    reasoning, close, answer = text.partition(CLOSE)
    return (reasoning, answer.lstrip("\r\n")) if close else (reasoning, None)


def split_reasoning(text: str, mode: ReasoningMode | Literal["any"] = "any") -> tuple[str, str]:
    """(reasoning, answer) of a whole reply, both stripped; an unfinished think block is all reasoning.

    ``mode`` None (a template without thinking) splits nothing off; ``any`` (a reply of unknown origin, such
    as a predictions file) splits at the last ``</think>`` when there is one."""
    if mode is None:
        return "", text.strip()
    if mode == "any":
        parts = split_think(text)
        return (parts[0], parts[1].strip()) if parts else ("", text.strip())
    reasoning, answer = partial_reasoning(text, mode)
    if answer is None:
        undecided = mode == "tagged" and not text.lstrip().startswith(OPEN)
        return ("", text.strip()) if undecided else (reasoning.strip(), "")
    return reasoning.strip(), answer.strip()
