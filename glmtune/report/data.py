"""The run's data facts (``data.json``): sources and weights, samples, truncation, and where rejects went.

``glmtune train`` writes ``data.json`` once the data is encoded; the report's data section renders it. Counts
of left-out records are read back from the reject files themselves, so the report and the files agree.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

DATA_FILE = "data.json"
PARTS = {  # data.json "parts": how the samples were used
    "training": "training samples (after the validation split)",
    "validation": "validation samples (held out)",
    "replay": "replay_file samples mixed in",
    "self_replay": "self-replay samples mixed in",
    "identity_replay": "identity-replay samples mixed in",
    "other_extra": "other samples mixed in",
}
# reject files a run may write, with what they hold
REJECT_FILES = {
    "rejected.jsonl": "training records left out or removed (duplicates), each with its reason",
    "rejected_eval.jsonl": "eval_file records left out",
    "rejected_replay.jsonl": "replay_file records left out",
    "self_replay_dropped.jsonl": "self-replay drafts dropped, each with its reason",
    "identity_replay_dropped.jsonl": "identity-replay drafts dropped, each with its reason",
}


def source_file(source: Any) -> str:
    """The file part of a sample's ``source`` (``path:line`` or ``path:line:turn``)."""
    text = str(source)
    head, _, tail = text.rpartition(":")
    while head and tail.isdigit():
        text, (head, _, tail) = head, head.rpartition(":")
    return text


def reject_counts(path: Path) -> dict[str, Any]:
    """Rows of one reject file by code and by source file; duplicates removed are counted apart."""
    codes: Counter[str] = Counter()
    files: Counter[str] = Counter()
    rows = 0
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if not isinstance(row, dict):
                continue
            rows += 1
            codes[str(row.get("code") or row.get("reason") or "?")] += 1
            if row.get("source"):
                files[source_file(row["source"])] += 1
    return {"rows": rows, "codes": dict(codes), "files": dict(files)}


def samples_by_file(rows: Any) -> dict[str, int]:
    """How many samples each source file contributes (after weighting)."""
    try:
        sources = rows.select_columns(["source"])["source"] if hasattr(rows, "select_columns") else [
            r.get("source") for r in rows]
    except (KeyError, ValueError):
        return {}
    return dict(Counter(source_file(s) for s in sources if s is not None))


def data_facts(sources: list[Any], train: Any, eval_enc: Any, counts: dict[str, int], settings: dict[str, Any],
               out: Path) -> dict[str, Any]:
    """The ``data.json`` dict: totals, per-source rows and the reject files that exist in ``out``."""
    per_file = samples_by_file(train.rows)
    rejects = reject_counts(out / "rejected.jsonl")
    result = getattr(train, "result", None)
    facts: dict[str, Any] = {
        "settings": settings,
        "train": {"records": train.records, "samples": len(train.rows), "left_out": train.rejected,
                  "truncated": getattr(result, "truncated", None),
                  "trained_tokens_removed": getattr(result, "trained_tokens_removed", None)},
        "sources": [{"path": s.path, "format": s.format, "weight": s.weight,
                     "samples": per_file.get(s.path, 0), "rejects": rejects["files"].get(s.path, 0)}
                    for s in sources],
        "parts": counts,
        "files": {},
    }
    if settings.get("streaming"):  # only a probe of the data was encoded before training
        facts["train"].update(samples=None, records=None, left_out=None, truncated=None)
    if eval_enc is not None:
        facts["eval"] = {"records": eval_enc.records, "samples": len(eval_enc.rows), "left_out": eval_enc.rejected,
                         "truncated": getattr(getattr(eval_enc, "result", None), "truncated", None)}
    for name, what in REJECT_FILES.items():
        if (out / name).is_file():
            facts["files"][name] = {"what": what, "path": str(out / name), **reject_counts(out / name)}
    for name in ("validation_split.json", "self_replay.jsonl", "identity_replay.jsonl"):
        if (out / name).is_file():
            facts["files"][name] = {"what": "written by the run", "path": str(out / name)}
    return facts


def write_data_facts(out: Path, facts: dict[str, Any]) -> Path:
    """Write ``out/data.json``."""
    path = out / DATA_FILE
    path.write_text(json.dumps(facts, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    return path


def data_section(facts: dict[str, Any] | None, run_dir: Path) -> str:
    """HTML of the run's data: totals, sources with weights, and every reject file with its counts."""
    from html import escape

    from glmtune.report.table import html_table as _table

    if not facts:
        rejects = reject_counts(run_dir / "rejected.jsonl")
        if not rejects["rows"]:
            return '<p class="note">No data.json (a run from an older glmtune, or one that stopped early).</p>'
        facts = {"files": {"rejected.jsonl": {"path": str(run_dir / "rejected.jsonl"),
                                              "what": REJECT_FILES["rejected.jsonl"], **rejects}}}
    out: list[str] = []
    train, settings = facts.get("train") or {}, facts.get("settings") or {}
    totals = [["records read", train.get("records")], ["samples", train.get("samples")],
              ["left out", train.get("left_out")],
              [f"truncated (over max_length {settings.get('max_length')}, fitted by {settings.get('truncation')})",
               train.get("truncated")], ["trained tokens removed by truncation", train.get("trained_tokens_removed")]]
    totals += [[PARTS.get(k, k.replace("_", " ")), v] for k, v in (facts.get("parts") or {}).items()
               if v not in (None, 0)]
    if facts.get("eval"):
        ev = facts["eval"]
        totals.append(["eval_file samples (left out, truncated)",
                       f"{ev.get('samples')} ({ev.get('left_out')}, {ev.get('truncated')})"])
    rows = [[k, "n/a (streamed)" if v is None and settings.get("streaming") else v] for k, v in totals
            if v is not None or settings.get("streaming")]
    if rows:
        out.append(_table(["fact", "value"], rows))
    sources = facts.get("sources") or []
    if sources:
        out.append("<h3>Sources</h3>" + _table(
            ["file", "format", "weight", "samples (after weighting)", "rows in rejected.jsonl"],
            [[s.get("path"), s.get("format"), s.get("weight"), s.get("samples"), s.get("rejects")] for s in sources]))
    files = facts.get("files") or {}
    if files:
        out.append("<h3>Files written</h3>" + _table(
            ["file", "rows", "by reason", "what"],
            [[f.get("path", name), f.get("rows", ""), ", ".join(f"{k} {v}" for k, v in (f.get("codes") or {}).items()),
              f.get("what", "")] for name, f in files.items()], text_cols=(0, 2, 3)))
    return "".join(out) or f'<p class="note">{escape(DATA_FILE)} holds no data facts.</p>'


def record_run_data(out: Path, config: Any, train: Any, eval_enc: Any, counts: dict[str, Any],
                    streaming: bool) -> Path:
    """Write ``out/data.json`` for a run of ``config`` (a ``GlmtuneConfig``) from its encoded data."""
    from glmtune.config.loader import data_sources

    data = config.data
    settings = {"max_length": data.max_length, "truncation": data.truncation, "combine": data.combine,
                "packing": data.packing, "streaming": streaming, "eval_file": data.eval_file,
                "replay_file": data.replay_file, "replay_ratio": data.replay_ratio, "self_replay": data.self_replay}
    return write_data_facts(out, data_facts(data_sources(data.train_file), train, eval_enc, counts, settings, out))
