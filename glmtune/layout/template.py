"""The template-driven layout for any chat model: derived from the tokenizer's own chat template.

For each trained assistant message, the template is rendered up to the message before it with the
generation prompt, and up to the message itself. What lies between is the reply plus whatever the template
emits after it (``<|im_end|>`` for Qwen, ``<|eot_id|>`` for Llama-3): exactly those tokens are trained.
When the template emits no end-of-turn marker of its own (GLM-4 style, where the next role token ends the
turn), the special token that follows the reply is trained (the official shifted mask), and the token the
template would emit next is appended at the end.

Thinking templates (see ``thinking.py``): a past reply whose reasoning the template drops once later turns
follow is rendered as the template renders it and kept as context, so training matches serving; the last
reply keeps its reasoning. Where the generation prompt opens ``<think>`` (GLM-Z1), the last reply is the
generation prompt plus the text the model writes after it. Any other reply that is not prefix-stable is
refused with the difference shown.
"""

from __future__ import annotations

from typing import Any

from glmtune.layout.base import IGNORE_INDEX, EncodedSample, LayoutError, render, template_ids
from glmtune.layout.messages import Dialect, generic_call, probe_dialect, render_template, to_template
from glmtune.layout.thinking import (
    Thinking,
    generated_reply,
    probe_thinking,
    template_kwargs,
    with_reasoning_field,
)

PROBE = [{"role": "user", "content": "ping"}, {"role": "assistant", "content": "pong"}]


def _diff(a: str, b: str) -> str:
    i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return f"first difference at character {i}: {a[max(0, i - 40):i + 40]!r} vs {b[max(0, i - 40):i + 40]!r}"


class TemplateLayout:
    """Layout for any tokenizer with a chat template."""

    name = "template"

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.dialect: Dialect = probe_dialect(tokenizer)
        self.thinking: Thinking = probe_thinking(tokenizer)
        after = render(tokenizer, PROBE).split("pong", 1)[-1]
        self.reply_suffix = after  # what the template writes after a reply (its end-of-turn marker, if any)
        marker = self._special_ids(after)[:1]
        # A template with its own end-of-turn marker (Qwen <|im_end|>, Llama-3 <|eot_id|>) ends replies with
        # it; otherwise (GLM-4) the role token of whatever follows ends the reply.
        self.own_marker = bool(marker)
        self.end_of_turn = marker or self._next_role_tokens()
        # what follows a tool call where the template has no marker of its own (<|observation|> for GLM)
        self.call_end = marker or (self._next_role_tokens(calls_only=True) or self.end_of_turn)[:1]
        stops = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        self._stop_ids = list(dict.fromkeys(stops + self.end_of_turn))
        if not self._stop_ids:
            raise LayoutError("cannot tell how a reply ends: no eos token and no end-of-turn token in the template")

    @property
    def thinks(self) -> bool:
        """The template has thinking (renders reasoning, or opens a think block in its generation prompt)."""
        return self.thinking.thinks

    @property
    def stop_ids(self) -> list[int]:
        """The tokenizer's eos plus the end-of-turn token(s) the template emits after a reply."""
        return list(self._stop_ids)

    def _special_ids(self, text: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        special = set(self.tokenizer.all_special_ids)
        return [i for i in ids if i in special]

    def _next_role_tokens(self, calls_only: bool = False) -> list[int]:
        """The first special token of each kind of message that can follow a reply (user, tool result)."""
        found: list[int] = []
        call = [{"role": "user", "content": "ping"}, {"role": "assistant", "content": "{}", "metadata": "f"}]
        generic = [call[0], {"role": "assistant", "content": "", "tool_calls": [generic_call("f", {})]}]
        probes = [(call, "observation"), (call, "tool"), (generic, "tool")]
        for probe, follow in ([] if calls_only else [(PROBE, "user")]) + probes:
            try:
                text = render(self.tokenizer, probe + [{"role": follow, "content": "ping"}])
            except Exception:  # the template does not know this role
                continue
            tail = text[len(render(self.tokenizer, probe)):]
            found += self._special_ids(tail)[:1]
        return list(dict.fromkeys(found))

    def to_template(self, messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        """glmtune's GLM-4 messages as ``(messages, top-level tools)`` in the form this template reads; inline
        reasoning is moved to ``reasoning_content`` so every template sees it the same way."""
        return to_template([with_reasoning_field(m) for m in messages], self.dialect)

    def encode(self, messages: list[dict[str, Any]], combine: bool, train_reasoning: bool = True) -> EncodedSample:
        """Template ids; labels on each trained reply (its reasoning too, unless ``train_reasoning`` is off)
        and the token that ends it."""
        shown, tools = self.to_template(messages)
        kwargs = template_kwargs(messages, self.thinking)
        last = len(shown) - 1 if shown and shown[-1]["role"] == "assistant" else None
        written = self.thinking.opens_think and last is not None  # the last reply as the model writes it
        full = (self._render(shown[:last], tools, kwargs, True) + self._written(shown, tools, kwargs) if written
                else self._render(shown, tools, kwargs))
        spans: list[tuple[int, int]] = []
        hidden: list[tuple[int, int]] = []  # reasoning inside a trained reply that is not trained
        for i in self._trained_replies(shown, combine):
            span = self._reply_span(shown, tools, kwargs, i, full, written and i == last)
            if span is None:
                continue  # a past reply the template rewrites once later turns follow: context only
            spans.append(span)
            reasoning = (shown[i].get("reasoning_content") or "").strip()
            at = full.find(reasoning, *span) if reasoning and not train_reasoning else -1
            if at >= 0:
                hidden.append((at, at + len(reasoning)))
        ends_with_call = last is not None and bool(shown[-1].get("metadata") or shown[-1].get("tool_calls"))
        return self._label(full, spans, hidden, close_turn=last is not None, ends_with_call=ends_with_call)

    def _written(self, shown: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                 kwargs: dict[str, Any]) -> str:
        """The last reply as the model writes it after a generation prompt that opened ``<think>``: reasoning,
        ``</think>``, then the answer, or a call as the template writes its turn without the role token
        (``get_weather\\n{...}``); then the template's end-of-turn text."""
        message = shown[-1]
        body = message.get("content") or ""
        if message.get("metadata") or message.get("tool_calls"):
            turn = self._render(shown, tools, kwargs)[len(self._render(shown[:-1], tools, kwargs)):]
            role = next((t for t in self.tokenizer.convert_ids_to_tokens(self._special_ids(turn))), "")
            body = turn.split(role, 1)[-1] if role else turn
        return generated_reply(body, message.get("reasoning_content")) + self.reply_suffix

    def _render(self, shown: list[dict[str, Any]], tools: list[dict[str, Any]] | None, kwargs: dict[str, Any],
                generation_prompt: bool = False) -> str:
        return render_template(self.tokenizer, shown, tools, generation_prompt, **kwargs)

    @staticmethod
    def _trained_replies(shown: list[dict[str, Any]], combine: bool) -> list[int]:
        assistant = [i for i, m in enumerate(shown) if m["role"] == "assistant"]
        chosen = [i for i in (assistant[-1:] if combine else assistant) if shown[i].get("loss") is not False]
        if chosen and chosen[0] == 0:
            raise LayoutError("a conversation that starts with an assistant reply has no prompt to condition on")
        return chosen

    def _reply_span(self, shown: list[dict[str, Any]], tools: list[dict[str, Any]] | None, kwargs: dict[str, Any],
                    i: int, full: str, written: bool) -> tuple[int, int] | None:
        """Characters of reply ``i`` in ``full``; None for a past reply the template renders differently from
        how the model writes it (its reasoning dropped, or a think block the prompt opened), kept as context."""
        prefix = self._render(shown[:i], tools, kwargs, True)
        if written:
            return len(prefix), len(full)
        upto = self._render(shown[: i + 1], tools, kwargs)
        past = i < len(shown) - 1
        rewritten = bool(shown[i].get("reasoning_content")) or self.thinking.opens_think
        if not upto.startswith(prefix):
            if past and rewritten:
                return None
            raise LayoutError(
                f"message {i + 1}: the chat template's generation prompt is not how it renders the start of "
                "this reply (for instance it opens a <think> block that the rendered reply lacks), so the "
                "tokens of the reply cannot be told apart; " + _diff(prefix, upto))
        if not full.startswith(upto):
            if past and rewritten:
                return None
            raise LayoutError(
                f"message {i + 1}: the chat template renders this reply differently once later turns follow "
                "(it rewrites earlier replies), so the reply cannot be trained in this sequence the way the "
                "model generates it. Set data.combine: true (train only the last reply of each conversation; "
                "its rendering is exact) or split the conversation into one record per reply; "
                + _diff(upto, full))
        return len(prefix), len(upto)

    def _label(self, full: str, spans: list[tuple[int, int]], hidden: list[tuple[int, int]],
               close_turn: bool, ends_with_call: bool = False) -> EncodedSample:
        """Tokenize ``full``; label tokens that start inside a span (and outside ``hidden``), and, where the
        template has no end-of-turn marker of its own, the special token that follows each reply."""
        enc = self.tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        offsets = list(enc["offset_mapping"])
        if not self.own_marker and close_turn:  # what the template would emit next ("EOS for chat" in GLM-4)
            ids.append(self.call_end[0] if ends_with_call else self.end_of_turn[0])
            offsets.append((len(full), len(full)))
        labels = [tid if any(s <= start < e for s, e in spans) and not any(s <= start < e for s, e in hidden)
                  else IGNORE_INDEX for tid, (start, _) in zip(ids, offsets)]
        if not self.own_marker:
            special = set(self.tokenizer.all_special_ids) | set(self._stop_ids)
            for s, e in spans:  # the role token that follows the reply ends it (the official shifted mask)
                inside = [k for k, (start, _) in enumerate(offsets) if s <= start < e]
                nxt = inside[-1] + 1 if inside else None
                if nxt is not None and nxt < len(ids) and ids[nxt] in special:
                    labels[nxt] = ids[nxt]
        return EncodedSample(ids, labels)

    def reference_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        """The template's own tokenized rendering that ``encode``'s ids must start with: the whole conversation,
        or, where the generation prompt opens ``<think>``, the prompt plus the last reply as the model writes it."""
        shown, tools = self.to_template(messages)
        kwargs = template_kwargs(messages, self.thinking)
        if not (self.thinking.opens_think and shown and shown[-1]["role"] == "assistant"):
            return template_ids(self.tokenizer, shown, tools=tools, **kwargs)
        prompt = template_ids(self.tokenizer, shown[:-1], add_generation_prompt=True, tools=tools, **kwargs)
        written = self._written(shown, tools, kwargs)
        return prompt + list(self.tokenizer(written, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, messages: list[dict[str, Any]], enable_thinking: bool | None = None) -> list[int]:
        """The conversation so far plus the generation prompt, as the template renders it; ``enable_thinking``
        False asks a thinking template for an answer without reasoning."""
        shown, tools = self.to_template(messages)
        kwargs = template_kwargs(messages, self.thinking)
        if enable_thinking is not None and self.thinking.nothink_switch:
            kwargs["enable_thinking"] = enable_thinking
        return template_ids(self.tokenizer, shown, add_generation_prompt=True, tools=tools, **kwargs)
