"""The old in-process encoding loop: every record read into Python lists, encoded in one loop.

It is the reference the `datasets` path (``glmtune.train.dataset.encode_sources``) is tested against
(tests/train/test_data_scale.py, tests/data/test_train_clean.py, tests/train/test_plan.py) and the ``loop`` baseline of
``python -m bench.tokenize``. It is written independently of the cache's code path on purpose (its own reading,
placeholder filling and cleaning calls), so that agreement between the two means something.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from glmtune.config.schema import DataSource
from glmtune.data.conversation import Conversation
from glmtune.data.placeholders import fill_placeholders, find_placeholders
from glmtune.data.read import read_any
from glmtune.data.train_clean import CleanSettings, clean_for_training
from glmtune.errors import DataError
from glmtune.layout.base import ChatLayout
from glmtune.layout.encode import EncodeResult, encode_conversations
from glmtune.train.dataset import ConversationView, Encoded, weighted_indices

log = logging.getLogger(__name__)


def read_source(source: DataSource, values: dict[str, str]) -> tuple[list[Conversation], list[dict], int]:
    """Read one file in any supported format and fill identity placeholders; unfilled ones are rejected."""
    read = read_any(source.path, None if source.format == "auto" else source.format)
    kept: list[Conversation] = []
    rejects = list(read.rejected_records)
    for conv in read.conversations:
        messages = fill_placeholders(conv.messages, values) if values else conv.messages
        missing = find_placeholders(messages)
        if missing:
            names = ", ".join("{{" + m + "}}" for m in sorted(missing))
            rejects.append({"source": conv.source, "code": "unfilled_placeholder",
                            "reason": f"{names} left in the data; set identity.name / identity.author",
                            "raw": json.dumps({"messages": conv.messages}, ensure_ascii=False)})
            continue
        kept.append(Conversation(messages, conv.source, conv.extra))
    return kept, rejects, read.total


def _write_rejects(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _encode_file(source: DataSource, layout: ChatLayout, combine: bool, max_length: int, values: dict[str, str],
                 truncation: str, clean: CleanSettings | None) -> tuple[list[Conversation], list[dict], int,
                                                                         EncodeResult]:
    """One file: read, fill, clean and encode; (conversations, rejects, records, encoded)."""
    convs, bad, records = read_source(source, values)
    if clean is not None:
        cleaned = clean_for_training(convs, clean.repair, clean.name, clean.author, clean.drop_conflicts)
        convs, bad = cleaned.kept, bad + cleaned.rejects
        if cleaned.summary():
            log.info(f"  {source.path}: {cleaned.summary()}")
    encoded = encode_conversations(convs, layout, combine=combine, max_length=max_length, truncation=truncation)
    bad += [{"source": p.source, "code": p.code, "reason": p.reason} for p in encoded.dropped]
    return convs, bad, records, encoded


def encode_sources_loop(
    sources: list[DataSource],
    layout: ChatLayout,
    combine: bool,
    max_length: int,
    rejects_path: Path | None,
    values: dict[str, str] | None = None,
    max_reject_ratio: float = 1.0,
    seed: int = 0,
    truncation: str = "official",
    clean: CleanSettings | None = None,
) -> Encoded:
    """``encode_sources`` the old way: everything in memory, one Python loop."""
    rows: list[dict[str, Any]] = []
    rejects: list[dict] = []
    total = 0
    merged = EncodeResult()
    conversations: list[Conversation] = []
    for source in sources:
        convs, bad, records, encoded = _encode_file(source, layout, combine, max_length, values or {}, truncation,
                                                    clean)
        conversations += convs
        total += records
        rejects += bad
        file_rows = [{"input_ids": i, "labels": lab, "source": src}
                     for i, lab, src in zip(encoded.input_ids, encoded.labels, encoded.sources)]
        kept_rows = [file_rows[i] for i in weighted_indices(len(file_rows), source.weight, seed)]
        rows += kept_rows
        merged.truncated += encoded.truncated
        merged.trained_tokens += encoded.trained_tokens if source.weight == 1.0 else sum(
            sum(1 for x in r["labels"] if x != -100) for r in kept_rows)
        merged.trained_tokens_removed += encoded.trained_tokens_removed
        weight = f", weight {source.weight:g}" if source.weight != 1.0 else ""
        log.info(f"  {source.path}: {records} records -> {len(file_rows)} samples{weight}, {len(bad)} left out, "
                 f"{encoded.truncated} over max_length={max_length} fitted by '{truncation}' "
                 f"({encoded.trained_tokens_removed} trained tokens removed)")
    _check(rows, rejects, total, rejects_path, max_reject_ratio)
    merged.input_ids = [r["input_ids"] for r in rows]
    merged.labels = [r["labels"] for r in rows]
    merged.records, merged.rejected = total, len(rejects)
    return Encoded(rows, merged, ConversationView(conversations))


def _check(rows: list[dict], rejects: list[dict], total: int, rejects_path: Path | None,
           max_reject_ratio: float) -> None:
    """Report and write the rejects; refuse no samples or too many rejects."""
    for row in rejects[:5]:
        log.info(f"  skipped {row['source']}: [{row['code']}] {row['reason']}")
    where = str(rejects_path) if rejects_path else "`glmtune data check` for the full list"
    if rejects and rejects_path:
        _write_rejects(rejects, rejects_path)
        log.info(f"  {len(rejects)} record(s) left out; every one is listed with its reason in {rejects_path}")
    elif rejects:
        log.info(f"  {len(rejects)} record(s) would be left out")
    if not rows:
        raise DataError(f"no usable training sample ({len(rejects)} left out, see {where})")
    counted = sum(row.get("counts_as_rejected", True) for row in rejects)  # removed duplicates do not count
    if total and counted / total > max_reject_ratio:
        raise DataError(
            f"{counted} of {total} records ({counted / total:.0%}) were rejected, more than "
            f"data.max_reject_ratio={max_reject_ratio:g}; see {where} for each record and its reason"
        )
