"""Check a layout against the template on real conversations before a run trains on them."""

from __future__ import annotations

import json
from typing import Any

from glmtune.layout.base import IGNORE_INDEX, ChatLayout, LayoutError, template_ids


def trained_spans(input_ids: list[int], labels: list[int]) -> list[list[int]]:
    """Runs of consecutive supervised token ids."""
    spans: list[list[int]] = []
    previous = False
    for tid, label in zip(input_ids, labels):
        if label != IGNORE_INDEX:
            if not previous:
                spans.append([])
            spans[-1].append(tid)
        previous = label != IGNORE_INDEX
    return spans


def reply_needles(message: dict[str, Any]) -> list[str]:
    """Texts a trained reply must show: its answer (after any ``</think>``; a GLM-4 call's JSON arguments),
    and each generic call's name and argument values."""
    content = message.get("content") if isinstance(message.get("content"), str) else ""
    needles = [content.split("</think>")[-1].strip()] if content.strip() else []
    for call in message.get("tool_calls") or []:
        fn = call.get("function", call)
        needles.append(fn["name"])
        arguments = fn.get("arguments")
        for value in (arguments.values() if isinstance(arguments, dict) else []):
            if isinstance(value, str):
                needles.append(value)
            elif isinstance(value, (int, float)):
                needles.append(json.dumps(value))
    return [n for n in needles if n]


def reference_ids(layout: ChatLayout, tokenizer: Any, messages: list[dict[str, Any]]) -> list[int]:
    """The template's own tokenized rendering of ``messages`` (a layout may say how, e.g. for a think prompt)."""
    own = getattr(layout, "reference_ids", None)
    if own is not None:
        return own(messages)
    shown, tools = layout.to_template(messages)
    return template_ids(tokenizer, shown, tools=tools)


def prompt_texts(messages: list[dict[str, Any]], shortest: int = 12) -> list[str]:
    """System, user and tool-result texts long enough that finding one inside a trained span means a leak."""
    return [m["content"].strip() for m in messages if m["role"] in ("system", "user", "observation", "tool")
            and isinstance(m.get("content"), str) and len(m["content"].strip()) >= shortest]


def verify_layout(layout: ChatLayout, tokenizer: Any, conversations: list[list[dict[str, Any]]],
                  combine: bool, limit: int = 16) -> int:
    """Raise ``LayoutError`` with a diff unless ids equal the template's rendering token for token, every
    trained span is one reply followed by the special token that ends it, and no prompt text is trained;
    return how many conversations were checked."""
    stop_texts = [tokenizer.decode([s], skip_special_tokens=False) for s in layout.stop_ids]
    special = set(tokenizer.all_special_ids) | set(layout.stop_ids)
    checked = 0
    for messages in conversations[:limit]:
        sample = layout.encode(messages, combine=combine)
        expected = reference_ids(layout, tokenizer, messages)
        if sample.input_ids[: len(expected)] != expected or len(sample.input_ids) - len(expected) > 1:
            raise LayoutError("layout ids differ from the chat template's rendering:\n  template: "
                              f"{tokenizer.decode(expected)!r}\n  layout:   {tokenizer.decode(sample.input_ids)!r}")
        shown, _ = layout.to_template(messages)
        replies = [m for m in shown if m["role"] == "assistant" and m.get("loss") is not False]
        if combine:
            replies = replies[-1:] if shown and shown[-1]["role"] == "assistant" else []
        prompts = prompt_texts(messages)
        for span in trained_spans(sample.input_ids, sample.labels):
            text = tokenizer.decode(span, skip_special_tokens=False)
            if span[-1] not in special and not any(text.rstrip().endswith(s) for s in stop_texts):
                raise LayoutError(f"a trained span does not end with the special token that ends a turn: {text!r}")
            if not any(all(n in text for n in reply_needles(r)) for r in replies):
                raise LayoutError(f"a trained span is not one of the replies: {text!r}")
            leaked = [p for p in prompts if p in text]
            if leaked:
                raise LayoutError(f"a trained span holds prompt text {leaked[0]!r}: {text!r}")
        checked += 1
    return checked
