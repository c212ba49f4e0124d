"""The metrics of ``glmtune eval`` as rows and as a terminal table."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

SHOW_OFFENDING = 5  # offending identity answers / retention regressions printed on the terminal

Say = Callable[[str], Any]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(section, metric, formatted value) rows of a metrics dict, for the terminal and the run report."""
    out: list[tuple[str, str, str]] = []
    text = metrics.get("text")
    if text:
        for key in ("rouge-1", "rouge-2", "rouge-l"):
            out.append(("text", key, _num(text[key])))
        out.append(("text", "bleu-4", _num(text["bleu-4"], 4)))
        out.append(("text", "pairs (empty / error)", f"{text['n']} ({text['n_empty']} / {text['n_error']})"))
    deg = metrics.get("degeneration")
    if deg:
        out.append(("degeneration", "loop rate", _pct(deg["loop_rate"])))
        out.append(
            (
                "degeneration",
                "distinct-1 / distinct-2",
                f"{_num(deg['distinct-1'], 3)} / {_num(deg['distinct-2'], 3)}",
            )
        )
        length = f"{_num(deg['pred_len_mean'], 1)} units"
        if "ref_len_mean" in deg:
            length += f" (reference {_num(deg['ref_len_mean'], 1)}, ratio {_num(deg['len_ratio'])})"
        out.append(("degeneration", "reply length", length))
        for reason, share in (deg.get("finish_reason") or {}).items():
            out.append(("degeneration", f"finish: {reason}", _pct(share)))
    for token, share in (metrics.get("end_tokens") or {}).items():
        out.append(("end tokens", token, _pct(share)))
    gen = metrics.get("generation")
    if gen:
        out.append(
            ("generation", "samples/s", f"{gen['samples_per_s']:.2f} ({gen['n']} in {gen['seconds']:.1f} s)")
        )
    ident = metrics.get("identity")
    if ident:
        out.append(("identity", f"adoption of {ident['name']!r}", _pct(ident["adoption"])))
        if "author_adoption" in ident:
            out.append(("identity", f"adoption of {ident['author']!r}", _pct(ident["author_adoption"])))
        out.append(("identity", "old identity leakage", _pct(ident["leakage"])))
        out.append(("identity", "probes (offending)", f"{ident['n']} ({len(ident['offending'])})"))
    ret = metrics.get("retention")
    if ret:
        out.append(("retention", "ROUGE-L tuned vs base", _num(ret["rouge-l_tuned_vs_base"])))
        out.append(("retention", "identical answers", _pct(ret["identical"])))
        if "accuracy_base" in ret:
            out.append(
                (
                    "retention",
                    f"key accuracy ({ret['n_checkable']} checkable)",
                    f"{_pct(ret['accuracy_base'])} -> {_pct(ret['accuracy_tuned'])} "
                    f"({100 * ret['accuracy_change']:+.1f} pts)",
                )
            )
            out.append(
                (
                    "retention",
                    "regressions / improvements",
                    f"{len(ret['regressions'])} / {ret['improvements']}",
                )
            )
    return out


def print_metrics(metrics: dict[str, Any], say: Say = print) -> None:
    """Render the metrics as a rich table through ``say``, then the first offending answers/regressions."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="glmtune eval")
    for column in ("section", "metric", "value"):
        table.add_column(column, overflow="fold")
    previous = None
    for section, name, value in metric_rows(metrics):
        table.add_row(section if section != previous else "", name, value)
        previous = section
    buf = io.StringIO()
    Console(file=buf, width=110, highlight=False, color_system=None).print(table)
    say(buf.getvalue().rstrip())
    for item in (metrics.get("identity") or {}).get("offending", [])[:SHOW_OFFENDING]:
        say(f"  identity #{item['index']} {item['question']!r} -> {_clip(item['answer'])!r}: {item['why']}")
    for item in (metrics.get("retention") or {}).get("regressions", [])[:SHOW_OFFENDING]:
        say(
            f"  regression #{item['index']} {item['question']!r} (key {item['key']!r}): "
            f"base {_clip(item['base'])!r} -> tuned {_clip(item['tuned'])!r}"
        )


def _clip(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
