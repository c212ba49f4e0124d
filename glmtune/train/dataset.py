"""Read, check and encode the training data, reporting and saving everything that is left out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset

from glmtune.data.glm4_jsonl import read_glm4_jsonl, write_rejects
from glmtune.errors import DataError
from glmtune.layout.base import ChatLayout
from glmtune.layout.encode import EncodeResult, encode_conversations


@dataclass
class PreparedData:
    """A tokenised split plus what happened on the way."""

    dataset: Dataset
    encoded: EncodeResult
    records: int
    rejected: int


def prepare_split(
    path: str, layout: ChatLayout, combine: bool, max_length: int, rejects_path: Path, say: Any = print
) -> PreparedData:
    """Read ``path``, encode it, write rejected/dropped records to ``rejects_path``, and summarise."""
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
    dataset = Dataset.from_dict({"input_ids": encoded.input_ids, "labels": encoded.labels})
    return PreparedData(dataset, encoded, read.total, len(rejects))
