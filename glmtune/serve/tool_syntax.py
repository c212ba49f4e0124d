"""How a model writes a tool call, derived from its own chat template, and parsing generated replies with it.

The template renders a probe call; the reply text (as the server decodes it: up to the first stop id,
special tokens skipped) shows the family's syntax:

- ``name_line`` (GLM-4): ``{name}\\n{json arguments}``;
- ``json``: a JSON object holding the name and the arguments under two keys, between a fixed prefix and
  suffix: Qwen's ``<tool_call>\\n{"name": .., "arguments": {..}}\\n</tool_call>`` (one block per call),
  Llama-3.1's bare ``{"name": .., "parameters": {..}}``.

A leading ``<think>...</think>`` block (reasoning models) is skipped before a reply is classified.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from glmtune.layout.messages import PROBE_ARGS, PROBE_CALL, PROBE_TOOLS, render_template
from glmtune.serve.schemas import FunctionCall, ToolCall
from glmtune.serve.tools import Decision, classify, parse_tool_call

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def skip_reasoning(text: str) -> str | None:
    """``text`` after a leading think block; None while that block is still open."""
    stripped = text.lstrip()
    if not stripped.startswith(THINK_OPEN) and not THINK_OPEN.startswith(stripped or "x"):
        return text
    if THINK_CLOSE not in stripped:
        return None
    return stripped.split(THINK_CLOSE, 1)[1]


@dataclass(frozen=True)
class ToolSyntax:
    """One family's tool-call syntax."""

    kind: Literal["name_line", "json"]
    prefix: str = ""
    suffix: str = ""
    name_key: str = "name"
    args_key: str = "arguments"

    def classify(self, text: str, names: list[str]) -> Decision | None:
        """Whether a reply starting with ``text`` is a tool call, plain text, or still undecided (None)."""
        if not names:
            return "text"
        rest = skip_reasoning(text)
        if rest is None:
            return None
        if self.kind == "name_line":
            return classify(rest, names)
        head = rest.lstrip()
        if not head:
            return None
        start = self.prefix or "{"
        if head.startswith(start):
            return "tool"
        return None if start.startswith(head) else "text"

    def parse(self, text: str, names: list[str]) -> list[ToolCall] | None:
        """The tool calls a whole reply makes, or None when it is not (entirely) a call to declared tools."""
        rest = skip_reasoning(text)
        if rest is None:
            return None
        if self.kind == "name_line":
            call = parse_tool_call(rest.lstrip(), names)
            return [call] if call is not None else None
        chunks = self._chunks(rest.strip())
        if not chunks:
            return None
        calls = [self._call(chunk, names) for chunk in chunks]
        return None if any(c is None for c in calls) else calls  # type: ignore[return-value]

    def _chunks(self, text: str) -> list[str] | None:
        if not self.prefix:
            return [text] if text else None
        if not text.startswith(self.prefix):
            return None
        chunks = []
        for piece in text.split(self.prefix)[1:]:
            piece = piece.strip()
            if self.suffix:
                if not piece.endswith(self.suffix.strip()):
                    return None
                piece = piece[: len(piece) - len(self.suffix.strip())]
            chunks.append(piece.strip())
        return chunks

    def _call(self, chunk: str, names: list[str]) -> ToolCall | None:
        try:
            obj = json.loads(chunk)
        except (ValueError, RecursionError):
            return None
        if not isinstance(obj, dict) or obj.get(self.name_key) not in names:
            return None
        arguments = obj.get(self.args_key, {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                return None
        if not isinstance(arguments, dict):
            return None
        return ToolCall(function=FunctionCall(name=obj[self.name_key],
                                              arguments=json.dumps(arguments, ensure_ascii=False)))


GLM4_SYNTAX = ToolSyntax("name_line")


def probe_reply(layout: Any, tokenizer: Any) -> str | None:
    """The text of a probe call as the server would decode it, or None when the template renders none."""
    messages = [{"role": "system", "content": "", "tools": PROBE_TOOLS}, {"role": "user", "content": "ping"},
                {"role": "assistant", "metadata": PROBE_CALL, "content": json.dumps(PROBE_ARGS)}]
    try:
        shown, tools = layout.to_template(messages)
        prompt = render_template(tokenizer, shown[:-1], tools, add_generation_prompt=True)
        full = render_template(tokenizer, shown, tools)
    except Exception:  # a template without tool calls
        return None
    if not full.startswith(prompt):
        return None
    ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
    stops = set(layout.stop_ids)
    end = next((k for k, tid in enumerate(ids) if tid in stops), len(ids))
    return tokenizer.decode(ids[:end], skip_special_tokens=True)


def derive_syntax(layout: Any, tokenizer: Any) -> ToolSyntax | None:
    """The family's tool-call syntax from its template; None when no call shape can be recognised."""
    text = probe_reply(layout, tokenizer)
    if text is None or PROBE_CALL not in text:
        return None
    text = skip_reasoning(text) or ""
    head = text.lstrip()
    if head.startswith(PROBE_CALL + "\n"):
        try:
            if json.loads(head[len(PROBE_CALL):]) == PROBE_ARGS:
                return GLM4_SYNTAX
        except ValueError:
            return None
    decoder = json.JSONDecoder()
    at = text.find(PROBE_CALL)
    for start in (k for k in range(at, -1, -1) if text[k] == "{"):
        try:
            obj, end = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        name_key = next((k for k, v in obj.items() if v == PROBE_CALL), None)
        args_key = next((k for k, v in obj.items() if v == PROBE_ARGS or v == json.dumps(PROBE_ARGS)), None)
        if name_key and args_key:
            return ToolSyntax("json", text[:start].strip(), text[end:].strip(), name_key, args_key)
    return None


def describe_syntax(layout: Any, tokenizer: Any) -> str:
    """One line: how ``glmtune serve`` recognises this template's tool calls in generated text."""
    syntax = derive_syntax(layout, tokenizer)
    if syntax is None:
        return "served tool calls: not recognised (serve returns text)"
    if syntax.kind == "name_line":
        return "served tool calls: `{name}\\n{json arguments}`"
    where = f" between {syntax.prefix!r} and {syntax.suffix!r}" if syntax.prefix else ""
    return f"served tool calls: JSON with keys {syntax.name_key!r}/{syntax.args_key!r}{where}"
