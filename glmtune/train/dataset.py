"""Read, check and encode training data; carve the validation split; mix in replay data."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset

from glmtune.config.schema import DataSource
from glmtune.data.conversation import Conversation
from glmtune.data.glm4_jsonl import write_rejects
from glmtune.data.placeholders import fill_placeholders, find_placeholders
from glmtune.data.read import read_any
from glmtune.data.train_clean import Cleaned
from glmtune.errors import DataError
from glmtune.layout.base import ChatLayout
from glmtune.layout.encode import EncodeResult, encode_conversations


@dataclass
class Encoded:
    """Samples of one or more files plus what happened on the way."""

    rows: list[dict[str, Any]]
    result: EncodeResult
    records: int
    rejected: int
    conversations: list[Conversation]


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


def encode_sources(
    sources: list[DataSource],
    layout: ChatLayout,
    combine: bool,
    max_length: int,
    rejects_path: Path | None,
    values: dict[str, str] | None = None,
    max_reject_ratio: float = 1.0,
    seed: int = 0,
    say: Any = print,
    truncation: str = "official",
    cleaner: Callable[[list[Conversation]], Cleaned] | None = None,
) -> Encoded:
    """Read and encode every source; write rejects with reasons; refuse when too much was rejected."""
    rows: list[dict[str, Any]] = []
    rejects: list[dict] = []
    total = 0
    merged = EncodeResult()
    conversations: list[Conversation] = []
    for source in sources:
        convs, bad, records = read_source(source, values or {})
        if cleaner is not None:
            cleaned = cleaner(convs)
            convs, bad = cleaned.kept, bad + cleaned.rejects
            if cleaned.summary():
                say(f"  {source.path}: {cleaned.summary()}")
        conversations += convs
        total += records
        encoded = encode_conversations(convs, layout, combine=combine, max_length=max_length, truncation=truncation)
        bad += [{"source": p.source, "code": p.code, "reason": p.reason} for p in encoded.dropped]
        rejects += bad
        file_rows = [{"input_ids": i, "labels": lab, "source": src}
                     for i, lab, src in zip(encoded.input_ids, encoded.labels, encoded.sources)]
        rows += weighted(file_rows, source.weight, seed)
        merged.truncated += encoded.truncated
        merged.trained_tokens += encoded.trained_tokens
        merged.trained_tokens_removed += encoded.trained_tokens_removed
        weight = f", weight {source.weight:g}" if source.weight != 1.0 else ""
        say(f"  {source.path}: {records} records -> {len(file_rows)} samples{weight}, {len(bad)} left out, "
            f"{encoded.truncated} over max_length={max_length} fitted by '{truncation}' "
            f"({encoded.trained_tokens_removed} trained tokens removed)")
    for row in rejects[:5]:
        say(f"  skipped {row['source']}: [{row['code']}] {row['reason']}")
    where = str(rejects_path) if rejects_path else "`glmtune data check` for the full list"
    if rejects and rejects_path:
        write_rejects(rejects, rejects_path)
        say(f"  {len(rejects)} record(s) left out; every one is listed with its reason in {rejects_path}")
    elif rejects:
        say(f"  {len(rejects)} record(s) would be left out")
    if not rows:
        raise DataError(f"no usable training sample ({len(rejects)} left out, see {where})")
    counted = sum(row.get("counts_as_rejected", True) for row in rejects)  # removed duplicates do not count
    if total and counted / total > max_reject_ratio:
        raise DataError(
            f"{counted} of {total} records ({counted / total:.0%}) were rejected, more than "
            f"data.max_reject_ratio={max_reject_ratio:g}; see {where} for each record and its reason"
        )
    merged.input_ids = [r["input_ids"] for r in rows]
    merged.labels = [r["labels"] for r in rows]
    return Encoded(rows, merged, total, len(rejects), conversations)


def weighted(rows: list[dict], weight: float, seed: int) -> list[dict]:
    """Repeat whole copies for the integer part of ``weight``, then a seeded sample for the fraction."""
    if weight == 1.0:
        return rows
    whole, frac = int(weight), weight - int(weight)
    extra = rows[:]
    random.Random(seed + 7).shuffle(extra)
    return rows * whole + extra[: round(frac * len(rows))]


def split_validation(rows: list[dict], size: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Deterministically hold ``size`` samples out (seeded shuffle); return (train, validation)."""
    if size <= 0:
        return rows, []
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[:size])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def replay_sample(rows: list[dict], count: int, seed: int) -> list[dict]:
    """``count`` replay samples, drawn without replacement while possible, deterministic for ``seed``."""
    rng = random.Random(seed + 1)
    picked: list[dict] = []
    while len(picked) < count and rows:
        batch = rows[:]
        rng.shuffle(batch)
        picked.extend(batch[: count - len(picked)])
    return picked


def to_dataset(rows: list[dict]) -> Dataset:
    """An Arrow dataset with just the model inputs."""
    return Dataset.from_dict({"input_ids": [r["input_ids"] for r in rows], "labels": [r["labels"] for r in rows]})
