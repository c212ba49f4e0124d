"""Escaped HTML tables for the run report."""

from __future__ import annotations

import json
from html import escape
from typing import Any


def fmt(value: Any) -> str:
    """A compact text form of a value: floats to 4 significant digits, containers as JSON."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def html_table(head: list[str], rows: list[list[Any]], text_cols: tuple[int, ...] = ()) -> str:
    """An escaped HTML table; numbers get the ``num`` class, ``text_cols`` keep their line breaks."""
    out = ["<table><thead><tr>", *(f"<th>{escape(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>")
        for i, cell in enumerate(row):
            cls = "text" if i in text_cols else "num" if isinstance(cell, (int, float)) else ""
            out.append(
                f'<td class="{cls}">{escape(fmt(cell))}</td>' if cls else f"<td>{escape(fmt(cell))}</td>"
            )
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)
