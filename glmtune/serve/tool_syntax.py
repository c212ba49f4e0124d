"""How a model writes a tool call, derived from its own chat template, and parsing generated replies with it.

The template renders a probe call; the reply text (as the server decodes it: up to the first stop id,
special tokens skipped except the family's markup tags, see :mod:`glmtune.infer.reply_text`) shows the
family's syntax:

- ``name_line`` (GLM-4, 0414, Z1): ``{name}\\n{json arguments}`` (0414 writes a space before the newline);
- ``json``: a JSON object holding the name and the arguments under two keys, between a fixed prefix and
  suffix: Qwen's ``<tool_call>\\n{"name": .., "arguments": {..}}\\n</tool_call>`` (one block per call),
  Llama-3.1's bare ``{"name": .., "parameters": {..}}``;
- ``xml`` (GLM-4.5/4.6): ``<tool_call>{name}\\n<arg_key>k</arg_key>\\n<arg_value>v</arg_value>\\n…</tool_call>``,
  one block per call, each value JSON-decoded when it parses and a string otherwise. The four argument tags
  and the block's prefix and suffix are read off the probe, not assumed.

Where the template's generation prompt is not how it renders a call turn (GLM-Z1 opens ``<think>``), the
call turn as the template renders it shows the syntax. A leading ``<think>...</think>`` block (reasoning
models) is skipped before a reply is classified.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from glmtune.infer.reply_text import ReplyDecoder, kept_special_ids, partial_reasoning, probe_call_text
from glmtune.layout.messages import PROBE_ARGS, PROBE_CALL
from glmtune.serve.schemas import FunctionCall, ToolCall
from glmtune.serve.tools import Decision, classify, parse_tool_call

PROBE_KEY, PROBE_VALUE = next(iter(PROBE_ARGS.items()))
TAG = re.compile(r"<[^<>]*>")


def skip_reasoning(text: str) -> str | None:
    """``text`` after a leading think block; None while that block is still open (or may still start)."""
    return partial_reasoning(text, "tagged")[1]


@dataclass(frozen=True)
class ToolSyntax:
    """One family's tool-call syntax (``key_open``... are the ``xml`` kind's argument tags)."""

    kind: Literal["name_line", "json", "xml"]
    prefix: str = ""
    suffix: str = ""
    name_key: str = "name"
    args_key: str = "arguments"
    key_open: str = ""
    key_close: str = ""
    value_open: str = ""
    value_close: str = ""

    def call_at(self, text: str) -> int:
        """Where the first call block of a syntax with a fixed prefix starts in ``text``; -1 if none does."""
        return text.find(self.prefix) if self.prefix else -1

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
        calls = [self._xml_call(chunk, names) if self.kind == "xml" else self._call(chunk, names)
                 for chunk in chunks]
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


    def _xml_call(self, chunk: str, names: list[str]) -> ToolCall | None:
        name, tag, args_text = chunk.partition(self.key_open)
        if name.strip() not in names:
            return None
        pattern = (re.escape(self.key_open) + r"(.*?)" + re.escape(self.key_close) + r"\s*"
                   + re.escape(self.value_open) + r"(.*?)" + re.escape(self.value_close))
        rest, at, arguments = tag + args_text, 0, {}
        for found in re.finditer(pattern, rest, re.S):
            if rest[at:found.start()].strip():
                return None
            arguments[found.group(1).strip()] = _xml_value(found.group(2))
            at = found.end()
        if rest[at:].strip():
            return None
        return ToolCall(function=FunctionCall(name=name.strip(), arguments=json.dumps(arguments, ensure_ascii=False)))


def _xml_value(text: str) -> Any:
    """An ``xml`` argument value: JSON when it parses (numbers, booleans, objects), else the text itself."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


GLM4_SYNTAX = ToolSyntax("name_line")


def probe_reply(layout: Any, tokenizer: Any) -> str | None:
    """The text of a probe call as the server would decode it, or None when the template renders none."""
    text = probe_call_text(layout, tokenizer)
    if text is None:
        return None
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    stops = set(layout.stop_ids)
    end = next((k for k, tid in enumerate(ids) if tid in stops), len(ids))
    return ReplyDecoder(tokenizer, kept_special_ids(layout, tokenizer)).decode(ids[:end])


def _xml_syntax(text: str) -> ToolSyntax | None:
    """The ``xml`` syntax from a probe call written as ``{prefix}{name}{key_open}key{key_close}...``."""
    at = text.find(PROBE_CALL)
    rest = text[at + len(PROBE_CALL):]
    k = rest.find(PROBE_KEY)
    v = rest.find(str(PROBE_VALUE), k + len(PROBE_KEY)) if k >= 0 else -1
    if v < 0:
        return None
    pieces = [rest[:k], rest[k + len(PROBE_KEY):v], rest[v + len(str(PROBE_VALUE)):]]
    if any(TAG.sub("", piece).strip() for piece in pieces):
        return None  # anything but tags and spaces around the key and the value: not this shape
    opening, between, closing = (TAG.findall(piece) for piece in pieces)
    prefix = text[:at].strip()
    if len(opening) != 1 or len(between) != 2 or len(closing) != 2 or not TAG.fullmatch(prefix):
        return None
    return ToolSyntax("xml", prefix, closing[1], key_open=opening[0], key_close=between[0],
                      value_open=between[1], value_close=closing[0])


def derive_syntax(layout: Any, tokenizer: Any) -> ToolSyntax | None:
    """The family's tool-call syntax from its template; None when no call shape can be recognised."""
    text = probe_reply(layout, tokenizer)
    if text is None or PROBE_CALL not in text:
        return None
    text = skip_reasoning(text) or ""
    head = text.lstrip()
    if head.startswith(PROBE_CALL) and head[len(PROBE_CALL):].lstrip(" ").startswith("\n"):
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
    return _xml_syntax(text)


def describe_syntax(layout: Any, tokenizer: Any) -> str:
    """One line: how ``glmtune serve`` recognises this template's tool calls in generated text."""
    syntax = derive_syntax(layout, tokenizer)
    if syntax is None:
        return "served tool calls: not recognised (serve returns text)"
    if syntax.kind == "name_line":
        return "served tool calls: `{name}\\n{json arguments}`"
    if syntax.kind == "xml":
        return (f"served tool calls: {syntax.prefix}{{name}} then {syntax.key_open}key{syntax.key_close} "
                f"{syntax.value_open}value{syntax.value_close} pairs, up to {syntax.suffix}")
    where = f" between {syntax.prefix!r} and {syntax.suffix!r}" if syntax.prefix else ""
    return f"served tool calls: JSON with keys {syntax.name_key!r}/{syntax.args_key!r}{where}"
