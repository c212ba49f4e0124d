"""Show a sample with its trained spans highlighted, so users see exactly what is learned."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from glmtune.layout.base import IGNORE_INDEX


def runs(tokenizer: Any, input_ids: list[int], labels: list[int]) -> list[tuple[str, bool]]:
    """Decoded runs of consecutive tokens that are all trained or all untrained."""
    out: list[tuple[str, bool]] = []
    run: list[int] = []
    state = False
    for tid, label in zip(input_ids, labels):
        trained = label != IGNORE_INDEX
        if run and trained != state:
            out.append((tokenizer.decode(run, skip_special_tokens=False), state))
            run = []
        run.append(tid)
        state = trained
    if run:
        out.append((tokenizer.decode(run, skip_special_tokens=False), state))
    return out


def highlight(tokenizer: Any, input_ids: list[int], labels: list[int]) -> Text:
    """Rich text of the sample: trained tokens bold on green, the rest dim."""
    text = Text()
    for piece, trained in runs(tokenizer, input_ids, labels):
        text.append(piece, style="bold black on green" if trained else "dim")
    return text


def plain_markup(tokenizer: Any, input_ids: list[int], labels: list[int]) -> str:
    """The same view without colours: trained spans wrapped in ⟦ ⟧."""
    return "".join(f"⟦{piece}⟧" if trained else piece for piece, trained in runs(tokenizer, input_ids, labels))


def describe_layout(layout: Any, tokenizer: Any) -> str:
    """One paragraph: the layout, its stop tokens, and the tool message form it derived."""
    stops = ", ".join(tokenizer.convert_ids_to_tokens(i) for i in layout.stop_ids)
    lines = [f"layout: {layout.name}; stop tokens: {stops}"]
    dialect = getattr(layout, "dialect", None)
    if dialect is not None:
        tools = {True: "on a message", False: "top-level `tools`", None: "not rendered"}[dialect.tools_on_message]
        calls = "GLM-4 `metadata`" if dialect.glm_calls else "`tool_calls`" if dialect.generic_calls else "none"
        lines.append(f"tools: {tools}; calls: {calls}; results: {dialect.tool_role or 'not rendered'}")
    thinking = getattr(layout, "thinking", None)
    if thinking is not None:
        lines.append(thinking_line(thinking))
    return "\n".join(lines)


def thinking_line(thinking: Any) -> str:
    """How the template handles reasoning, in one line."""
    if thinking.reads_reasoning:
        how = "the last reply's reasoning is rendered and trained; past replies' reasoning is dropped as served"
    elif thinking.opens_think:
        how = "the generation prompt opens <think>: the last reply is trained as written after it"
    else:
        return "thinking: none (reasoning in the data is dropped; the answer is trained)"
    switch = "; enable_thinking: false renders a non-thinking turn" if thinking.nothink_switch else ""
    return f"thinking: {how}{switch}"
