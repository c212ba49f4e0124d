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
