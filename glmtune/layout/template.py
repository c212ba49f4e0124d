"""The template-driven layout for any chat model: derived from the tokenizer's own chat template.

For each trained assistant message, the template is rendered up to the message before it with the
generation prompt, and up to the message itself. What lies between is the reply plus whatever the template
emits after it (``<|im_end|>`` for Qwen, ``<|eot_id|>`` for Llama-3): exactly those tokens are trained.
When the template emits no end-of-turn marker of its own (GLM-4 style, where the next role token ends the
turn), the token that follows the reply is trained if it is a stop token, and the token the template would
emit next is appended at the end. A template that is not prefix-stable at a trained reply is refused.
"""

from __future__ import annotations

from typing import Any

from glmtune.layout.base import IGNORE_INDEX, EncodedSample, LayoutError, render, template_ids
from glmtune.layout.messages import Dialect, probe_dialect, render_template, to_template

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
        after = render(tokenizer, PROBE).split("pong", 1)[-1]
        marker = self._special_ids(after)[:1]
        # A template with its own end-of-turn marker (Qwen <|im_end|>, Llama-3 <|eot_id|>) ends replies with
        # it; otherwise (GLM-4) the role token of whatever follows ends the reply.
        self.own_marker = bool(marker)
        self.end_of_turn = marker or self._next_role_tokens()
        stops = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        self._stop_ids = list(dict.fromkeys(stops + self.end_of_turn))
        if not self._stop_ids:
            raise LayoutError("cannot tell how a reply ends: no eos token and no end-of-turn token in the template")

    @property
    def stop_ids(self) -> list[int]:
        """The tokenizer's eos plus the end-of-turn token(s) the template emits after a reply."""
        return list(self._stop_ids)

    def _special_ids(self, text: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        special = set(self.tokenizer.all_special_ids)
        return [i for i in ids if i in special]

    def _next_role_tokens(self) -> list[int]:
        """The first special token of each kind of message that can follow a reply (user, tool result)."""
        found: list[int] = []
        call = [{"role": "user", "content": "ping"}, {"role": "assistant", "content": "{}", "metadata": "f"}]
        for probe, follow in ((PROBE, "user"), (call, "observation"), (call, "tool")):
            try:
                text = render(self.tokenizer, probe + [{"role": follow, "content": "ping"}])
            except Exception:  # the template does not know this role
                continue
            tail = text[len(render(self.tokenizer, probe)):]
            found += self._special_ids(tail)[:1]
        return list(dict.fromkeys(found))

    def to_template(self, messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        """glmtune's GLM-4 messages as ``(messages, top-level tools)`` in the form this template reads."""
        return to_template(messages, self.dialect)

    def encode(self, messages: list[dict[str, Any]], combine: bool) -> EncodedSample:
        """Template ids; labels on each trained reply and its end-of-turn marker."""
        tok = self.tokenizer
        messages, tools = self.to_template(messages)
        full = render_template(tok, messages, tools)
        assistant = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        if combine:
            assistant = assistant[-1:]
        spans: list[tuple[int, int]] = []
        for i in assistant:
            if messages[i].get("loss") is False:
                continue
            if i == 0:
                raise LayoutError("a conversation that starts with an assistant reply has no prompt to condition on")
            prefix = render_template(tok, messages[:i], tools, add_generation_prompt=True)
            upto = render_template(tok, messages[: i + 1], tools)
            if not upto.startswith(prefix):
                raise LayoutError(
                    f"message {i + 1}: the chat template's generation prompt is not how it renders the start of "
                    "this reply (for instance it opens a <think> block that the rendered reply lacks), so the "
                    "tokens of the reply cannot be told apart; " + _diff(prefix, upto))
            if not full.startswith(upto):
                raise LayoutError(
                    f"message {i + 1}: the chat template renders this reply differently once later turns follow "
                    "(it rewrites earlier replies, for instance drops their <think> reasoning), so the reply "
                    "cannot be trained in this sequence the way the model generates it. Set data.combine: true "
                    "(train only the last reply of each conversation; its rendering is exact) or split the "
                    "conversation into one record per reply; " + _diff(upto, full))
            spans.append((len(prefix), len(upto)))
        enc = tok(full, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        offsets = list(enc["offset_mapping"])
        if not self.own_marker and messages[-1]["role"] == "assistant":
            ids.append(self.end_of_turn[0])  # what the template would emit next ("EOS for chat" in GLM-4)
            offsets.append((len(full), len(full)))
        labels = [tid if any(s <= start < e for s, e in spans) else IGNORE_INDEX
                  for tid, (start, _) in zip(ids, offsets)]
        if not self.own_marker:
            stops = set(self._stop_ids)
            for s, e in spans:  # the token that follows the reply ends it: train it
                inside = [k for k, (start, _) in enumerate(offsets) if s <= start < e]
                nxt = inside[-1] + 1 if inside else None
                if nxt is not None and nxt < len(ids) and ids[nxt] in stops:
                    labels[nxt] = ids[nxt]
        return EncodedSample(ids, labels)

    def prompt_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        """The conversation so far plus the generation prompt, as the template renders it."""
        messages, tools = self.to_template(messages)
        return template_ids(self.tokenizer, messages, add_generation_prompt=True, tools=tools)
