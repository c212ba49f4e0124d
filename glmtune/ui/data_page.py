"""Data page: check data files with ``check_file`` (as ``glmtune data check`` does) and show what is learned."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glmtune.errors import UserError
from glmtune.ui.workspace import Workspace, command, split_paths

SAMPLES_SHOWN = 3
MAX_ROWS = 500  # problem rows sent to the page


@dataclass
class DataReport:
    """What the Data page shows after a check."""

    summary: str = ""  # Markdown: counts per file and in total
    quarantine: list[list[str]] = field(default_factory=list)  # [file:line, code, reason]
    problems: list[list[str]] = field(default_factory=list)  # [file:line, kind, code, reason]
    stats: str = ""
    samples: str = ""  # HTML, trained tokens marked
    commands: list[str] = field(default_factory=list)
    kept: int = 0
    quarantined: int = 0


def placeholder_values(name: str | None, author: str | None) -> dict[str, str]:
    """``{{name}}``/``{{author}}`` values typed on the page (blank ones left out)."""
    return {k: v.strip() for k, v in (("name", name), ("author", author)) if v and v.strip()}


def repaired_records(result: Any) -> int:
    """Kept records that a repair changed (filling a placeholder is not counted as a repair)."""
    kept = {c.source for c in result.kept}
    return len({r.source for r in result.repairs if r.source in kept and r.code != "filled_placeholder"})


def check_data(ws: Workspace, files: str | None, name: str | None = None, author: str | None = None,
               model: str | None = None, max_length: int | None = None) -> DataReport:
    """Run ``check_file`` on every file (quarantine and report written under ``checks/``) and gather the page."""
    from glmtune.data.check import check_file, problem_kind
    from glmtune.data.stats import format_stats
    from glmtune.layout.measure import TokenMeasure

    paths = split_paths(files)
    if not paths:
        raise UserError("choose or upload a data file first (.jsonl, .json, .csv or .parquet)")
    values = placeholder_values(name, author)
    model = (model or "").strip() or None
    max_length = max_length if max_length and max_length > 0 else None
    measure = TokenMeasure.from_model(model, max_length) if model else None
    report = DataReport()
    rows, results = [], []
    for path in paths:
        stem = Path(path).name
        quarantine, summary = ws.checks / f"{stem}.quarantine.jsonl", ws.checks / f"{stem}.report.json"
        result = check_file(path, quarantine=str(quarantine), report=str(summary), measure=measure, values=values)
        results.append(result)
        counts = result.counts()
        rows.append(f"| {html.escape(stem)} | {result.format or 'unknown'} | {counts['input']} | {counts['kept']} | "
                    f"{repaired_records(result)} | {counts['quarantined']} | {counts['warnings']} |")
        report.kept += counts["kept"]
        report.quarantined += counts["quarantined"]
        report.quarantine += [[Path(q["source"]).name, q["code"], q["reason"]] for q in result.quarantined]
        report.problems += [[Path(p.source).name, problem_kind(p.code), p.code, p.reason] for p in result.problems]
        report.stats += f"{stem}:\n" + "\n".join(f"  {line}" for line in format_stats(result.stats) + result.notes)
        report.stats += "\n"
        sets = [a for k, v in values.items() for a in ("--set", f"{k}={v}")]
        size = ["--model", model, "--max-length", str(max_length)] if model and max_length else (
            ["--model", model] if model else [])
        report.commands.append(command("data", "check", Path(path), *sets, *size, "--quarantine", quarantine,
                                       "--report", summary))
    total = sum(r.total for r in results)
    report.summary = "\n".join([
        f"**input {total} = kept {report.kept} + quarantined {report.quarantined}**"
        + (" — nothing usable: fix the data (see the reasons below)" if not report.kept else ""),
        "", "| file | format | input | kept | repaired | quarantined | warnings |",
        "| --- | --- | --- | --- | --- | --- | --- |", *rows])
    report.quarantine, report.problems = report.quarantine[:MAX_ROWS], report.problems[:MAX_ROWS]
    report.samples = samples_html(results, measure)
    return report


def samples_html(results: list[Any], measure: Any) -> str:
    """The first kept conversations laid out as training lays them out (``measure``'s layout), trained tokens
    marked as ``glmtune data tokenize --show`` marks them."""
    if measure is None:
        return "<p>Choose a model on the Model page to see the trained tokens of a few samples.</p>"
    from glmtune.layout.encode import encode_one
    from glmtune.layout.show import runs

    tokenizer, layout, max_length = measure.tokenizer, measure.layout, measure.max_length
    kept = [c for r in results for c in r.kept][:SAMPLES_SHOWN]
    if not kept:
        return "<p>No kept sample to show.</p>"
    parts = ['<p>Trained tokens are <mark class="glmtune-trained">highlighted</mark>; the rest is context.</p>']
    for i, conv in enumerate(kept, start=1):
        one = encode_one(conv.messages, layout, True, max_length or 1025, "keep_recent")
        body = "".join(f'<mark class="glmtune-trained">{html.escape(piece)}</mark>' if trained
                       else html.escape(piece) for piece, trained in runs(tokenizer, one.input_ids, one.labels))
        head = (f"sample {i} ({html.escape(Path(conv.source).name)}): {one.trained} trained of {len(one.input_ids)} tokens"
                + (", truncated" if one.truncated else ""))
        parts.append(f'<div class="glmtune-sample"><b>{head}</b><pre class="glmtune-tokens">{body}</pre></div>')
    return "\n".join(parts)
