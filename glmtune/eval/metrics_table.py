"""The metrics of ``glmtune eval`` as rows and as a terminal table."""

from __future__ import annotations

import io
import logging
from typing import Any

log = logging.getLogger(__name__)

SHOW_OFFENDING = 5  # offending identity answers / retention regressions printed on the terminal


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


Row = tuple[str, str, str]


def _text_rows(text: dict[str, Any]) -> list[Row]:
    rows = [("text", key, _num(text[key])) for key in ("rouge-1", "rouge-2", "rouge-l")]
    rows.append(("text", "bleu-4", _num(text["bleu-4"], 4)))
    rows.append(("text", "pairs (empty / error)", f"{text['n']} ({text['n_empty']} / {text['n_error']})"))
    return rows


def _degeneration_rows(deg: dict[str, Any]) -> list[Row]:
    rows = [("degeneration", "loop rate", _pct(deg["loop_rate"])),
            ("degeneration", "distinct-1 / distinct-2", f"{_num(deg['distinct-1'], 3)} / {_num(deg['distinct-2'], 3)}")]
    length = f"{_num(deg['pred_len_mean'], 1)} units"
    if "ref_len_mean" in deg:
        length += f" (reference {_num(deg['ref_len_mean'], 1)}, ratio {_num(deg['len_ratio'])})"
    rows.append(("degeneration", "reply length", length))
    rows += [("degeneration", f"finish: {reason}", _pct(share)) for reason, share in (deg.get("finish_reason") or {}).items()]
    return rows


def _identity_rows(ident: dict[str, Any]) -> list[Row]:
    rows = [("identity", f"adoption of {ident['name']!r}", _pct(ident["adoption"]))]
    if "author_adoption" in ident:
        rows.append(("identity", f"adoption of {ident['author']!r}", _pct(ident["author_adoption"])))
    rows.append(("identity", "old identity leakage", _pct(ident["leakage"])))
    if ident.get("misspelled"):
        rows.append(("identity", "name started, then misspelled", _pct(ident["misspelled"])))
    rows.append(("identity", "probes (offending)", f"{ident['n']} ({len(ident['offending'])})"))
    return rows


def _retention_rows(ret: dict[str, Any]) -> list[Row]:
    rows = [("retention", "ROUGE-L tuned vs base", _num(ret["rouge-l_tuned_vs_base"])),
            ("retention", "identical answers", _pct(ret["identical"]))]
    if "accuracy_base" in ret:
        rows.append(("retention", f"key accuracy ({ret['n_checkable']} checkable)",
                     f"{_pct(ret['accuracy_base'])} -> {_pct(ret['accuracy_tuned'])} "
                     f"({100 * ret['accuracy_change']:+.1f} pts)"))
        rows.append(("retention", "regressions / improvements",
                     f"{len(ret['regressions'])} / {ret['improvements']}"))
    return rows


def metric_rows(metrics: dict[str, Any]) -> list[Row]:
    """(section, metric, formatted value) rows of a metrics dict, for the terminal and the run report."""
    out: list[Row] = []
    if metrics.get("text"):
        out += _text_rows(metrics["text"])
    if metrics.get("degeneration"):
        out += _degeneration_rows(metrics["degeneration"])
    thought = metrics.get("reasoning")
    if thought:
        out.append(("reasoning", "replies with reasoning", f"{_pct(thought['share'])} ({thought['n_with']})"))
        out.append(("reasoning", "mean reasoning length", f"{_num(thought['chars_mean'], 1)} chars "
                                                          "(not part of the scored answer)"))
    out += [("end tokens", token, _pct(share)) for token, share in (metrics.get("end_tokens") or {}).items()]
    gen = metrics.get("generation")
    if gen:
        out.append(("generation", "samples/s", f"{gen['samples_per_s']:.2f} ({gen['n']} in {gen['seconds']:.1f} s)"))
    if metrics.get("identity"):
        out += _identity_rows(metrics["identity"])
    if metrics.get("retention"):
        out += _retention_rows(metrics["retention"])
    return out


def print_metrics(metrics: dict[str, Any]) -> None:
    """Log the metrics as a rich table (one plain-text message), then the first offending answers/regressions."""
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
    log.info(buf.getvalue().rstrip())
    for item in (metrics.get("identity") or {}).get("offending", [])[:SHOW_OFFENDING]:
        log.info(f"  identity #{item['index']} {item['question']!r} -> {_clip(item['answer'])!r}: {item['why']}")
    for item in (metrics.get("retention") or {}).get("regressions", [])[:SHOW_OFFENDING]:
        log.info(
            f"  regression #{item['index']} {item['question']!r} (key {item['key']!r}): "
            f"base {_clip(item['base'])!r} -> tuned {_clip(item['tuned'])!r}"
        )


def _clip(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
