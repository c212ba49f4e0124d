"""Check a layout against the template on real conversations before a run trains on them."""

from __future__ import annotations

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


def verify_layout(layout: ChatLayout, tokenizer: Any, conversations: list[list[dict[str, Any]]],
                  combine: bool, limit: int = 16) -> int:
    """Raise ``LayoutError`` with a diff unless ids match the template and every trained span is a reply
    followed by a stop token; return how many conversations were checked."""
    stops = set(layout.stop_ids)
    checked = 0
    for messages in conversations[:limit]:
        sample = layout.encode(messages, combine=combine)
        expected = template_ids(tokenizer, messages)
        if sample.input_ids[: len(expected)] != expected or len(sample.input_ids) - len(expected) > 1:
            raise LayoutError("layout ids differ from the chat template's rendering:\n  template: "
                              f"{tokenizer.decode(expected)!r}\n  layout:   {tokenizer.decode(sample.input_ids)!r}")
        replies = [m for m in messages if m["role"] == "assistant" and m.get("loss") is not False]
        if combine:
            replies = replies[-1:] if messages and messages[-1]["role"] == "assistant" else []
        for span in trained_spans(sample.input_ids, sample.labels):
            text = tokenizer.decode(span, skip_special_tokens=False)
            if not any(t in stops for t in span):
                raise LayoutError(f"a trained span does not contain a stop token {sorted(stops)}: {text!r}")
            if not any(r["content"].strip()[:20] in text for r in replies):
                raise LayoutError(f"a trained span is not one of the replies: {text!r}")
        checked += 1
    return checked
