"""Read, check and encode training data; carve the validation split; mix in replay data."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset

from glmtune.data.glm4_jsonl import read_glm4_jsonl, write_rejects
from glmtune.errors import DataError
from glmtune.layout.base import ChatLayout
from glmtune.layout.encode import EncodeResult, encode_conversations


@dataclass
class Encoded:
    """Samples of one file plus what happened on the way."""

    rows: list[dict[str, Any]]
    result: EncodeResult
    records: int
    rejected: int


def encode_file(
    path: str, layout: ChatLayout, combine: bool, max_length: int, rejects_path: Path, say: Any = print
) -> Encoded:
    """Read ``path`` and encode it; write every rejected or dropped record to ``rejects_path`` with a reason."""
    read = read_glm4_jsonl(path)
    encoded = encode_conversations(read.conversations, layout, combine=combine, max_length=max_length)
    rejects = list(read.rejected_records) + [
        {"source": p.source, "code": p.code, "reason": p.reason} for p in encoded.dropped
    ]
    for problem in (read.problems + encoded.dropped)[:5]:
        say(f"  skipped {problem}")
    if rejects:
        write_rejects(rejects, rejects_path)
        say(f"  {len(rejects)} record(s) left out; every one is listed with its reason in {rejects_path}")
    if not encoded.input_ids:
        raise DataError(f"{path}: no usable training sample ({len(rejects)} left out, see {rejects_path})")
    say(
        f"  {path}: {read.total} records -> {len(encoded.input_ids)} samples, "
        f"{encoded.trained_tokens} trained / {encoded.total_tokens} tokens, {encoded.truncated} cut at "
        f"max_length={max_length}"
    )
    rows = [{"input_ids": i, "labels": lab, "source": s}
            for i, lab, s in zip(encoded.input_ids, encoded.labels, encoded.sources)]
    return Encoded(rows, encoded, read.total, len(rejects))


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
