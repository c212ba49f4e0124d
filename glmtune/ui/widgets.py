"""Gradio helpers shared by the pages: error-safe handlers, the command box, links to served files."""

from __future__ import annotations

import functools
import html
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import gradio as gr

from glmtune.errors import UserError
from glmtune.ui.workspace import error_text, message, shown

log = logging.getLogger(__name__)

CSS = """
.glmtune-msg { padding: 6px 10px; border-radius: 4px; margin: 2px 0; border-left: 4px solid; }
.glmtune-ok { background: #e9f7ef; color: #14532d; border-color: #16a34a; }
.glmtune-error { background: #fdecea; color: #7f1d1d; border-color: #dc2626; white-space: pre-wrap; }
mark.glmtune-trained { background: #a7f3a0; color: #052e16; font-weight: 600; padding: 0; }
pre.glmtune-tokens { white-space: pre-wrap; word-break: break-word; font-size: 0.85em; }
"""


def _failure(exc: BaseException) -> str:
    """The error message of a handler, logged with its traceback when it is not a user mistake."""
    if not isinstance(exc, (UserError, OSError)):
        log.exception("unexpected error in the web UI")
    return message(error_text(exc), ok=False)


def safe(fn: Callable[..., tuple[Any, ...]], outputs: int, at: int = 0) -> Callable[..., tuple[Any, ...]]:
    """Wrap a handler: an error becomes a message in output ``at``; every other output keeps its value."""

    @functools.wraps(fn)
    def run(*args: Any) -> tuple[Any, ...]:
        try:
            return fn(*args)
        except Exception as exc:  # every failure lands on the page, never a spinner or a lost form
            out: list[Any] = [gr.skip()] * outputs
            out[at] = _failure(exc)
            return tuple(out)

    return run


def safe_stream(fn: Callable[..., Iterator[tuple[Any, ...]]], outputs: int, at: int = 0
                ) -> Callable[..., Iterator[tuple[Any, ...]]]:
    """``safe`` for a generator handler (streamed outputs)."""

    @functools.wraps(fn)
    def run(*args: Any) -> Iterator[tuple[Any, ...]]:
        try:
            yield from fn(*args)
        except Exception as exc:  # the conversation so far stays on the page
            out: list[Any] = [gr.skip()] * outputs
            out[at] = _failure(exc)
            yield tuple(out)

    return run


def command_box(elem_id: str) -> gr.Code:
    """The equivalent ``glmtune ...`` command of the page's latest action, with a copy button."""
    return gr.Code(label="Equivalent command (copy it to a terminal)", language="shell", interactive=False,
                   elem_id=elem_id, lines=1, max_lines=14)


def status_box(elem_id: str) -> gr.HTML:
    """The page's status line: what happened, or the error and what to do."""
    return gr.HTML(elem_id=elem_id)


def file_link(path: Path, text: str | None = None) -> str:
    """An HTML link to a file the UI serves (files under the workspace); its path shows on hover."""
    label = html.escape(text or path.name)
    return (f'<a href="/gradio_api/file={quote(str(path.resolve()))}" target="_blank" '
            f'title="{html.escape(shown(path))}">{label}</a>')
