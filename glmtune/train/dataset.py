"""Read, check and encode training data; carve the validation split; mix in replay data."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from datasets import Dataset, Features, List, Value, concatenate_datasets

from glmtune.config.schema import DataSource
from glmtune.data.cache import cache_root, prune_cache, tokenizer_fingerprint
from glmtune.data.conversation import Conversation
from glmtune.data.train_clean import CleanSettings
from glmtune.errors import DataError
from glmtune.layout.base import ChatLayout
from glmtune.layout.encode import EncodeCounts, EncodeSpec
from glmtune.train.tokenize import TokenizedFile, iter_conversations, tokenize_file, trained_tokens_of

Rows = list[dict[str, Any]] | Dataset  # samples: in-memory rows, or Arrow (memory-mapped) with the same columns
log = logging.getLogger(__name__)
MODEL_INPUTS = Features({"input_ids": List(Value("int32")), "labels": List(Value("int32"))})


class ConversationView:
    """The conversations behind an ``Encoded``, decoded lazily from Arrow (or held in a list)."""

    def __init__(self, parts: list[Dataset] | list[Conversation]) -> None:
        self.parts = parts

    def __iter__(self) -> Iterator[Conversation]:
        for part in self.parts:
            if isinstance(part, Conversation):
                yield part
            else:
                yield from iter_conversations(part)

    def __len__(self) -> int:
        return sum(1 if isinstance(p, Conversation) else len(p) for p in self.parts)

    def head(self, n: int) -> list[Conversation]:
        """The first ``n`` conversations."""
        out: list[Conversation] = []
        for conv in self:
            if len(out) >= n:
                break
            out.append(conv)
        return out


@dataclass
class Encoded:
    """Samples of one or more files plus what happened on the way (``result``: the counts)."""

    rows: Rows
    result: EncodeCounts
    conversations: ConversationView
    cache_entries: list[Path] = field(default_factory=list)  # the cache folders these samples are read from

    @property
    def records(self) -> int:
        """Records read."""
        return self.result.records

    @property
    def rejected(self) -> int:
        """Records left out."""
        return self.result.rejected

    @property
    def lengths(self) -> list[int]:
        """Token count of every sample, in order."""
        if isinstance(self.rows, Dataset):
            return self.rows.select_columns(["length"]).with_format("numpy")[:]["length"].tolist()
        return [len(r["input_ids"]) for r in self.rows]


def as_spec(layout: ChatLayout | EncodeSpec, combine: bool | None = None, max_length: int | None = None,
            truncation: str = "official", values: dict[str, str] | None = None,
            clean: CleanSettings | None = None) -> EncodeSpec:
    """``layout`` when it is already a spec, else the spec its fields make (the field-by-field call form)."""
    if isinstance(layout, EncodeSpec):
        return layout
    if combine is None or max_length is None:
        raise TypeError("give an EncodeSpec, or a layout with combine and max_length")
    return EncodeSpec(layout, combine, max_length, truncation, values or {}, clean)


def encode_sources(
    sources: list[DataSource],
    layout: ChatLayout | EncodeSpec,
    combine: bool | None = None,
    max_length: int | None = None,
    rejects_path: Path | None = None,
    values: dict[str, str] | None = None,
    max_reject_ratio: float = 1.0,
    seed: int = 0,
    truncation: str = "official",
    cache_dir: str | None = None,
    cache: bool = True,
    num_proc: int | str = "auto",
    clean: CleanSettings | None = None,
) -> Encoded:
    """Read, check and tokenise every source through `datasets` (cached on disk by content hash); write
    rejects with reasons; refuse when too much was rejected. Samples come back memory-mapped.

    ``layout`` may be the whole ``EncodeSpec``; then ``combine``, ``max_length``, ``truncation``, ``values`` and
    ``clean`` are taken from it."""
    spec = as_spec(layout, combine, max_length, truncation, values, clean)
    tokenizer_fp = tokenizer_fingerprint(spec.layout.tokenizer)  # type: ignore[attr-defined]
    root = cache_root(cache_dir) if cache else None
    tally = _SourceTally()
    for source in sources:
        tok = tokenize_file(source, spec, tokenizer_fp, root, num_proc)
        if tok.cleaning:
            log.info(f"  {source.path}: {tok.cleaning}")
        samples = weighted_dataset(tok.samples, source.weight, seed)
        tally.add(source, tok, samples)
        _log_source(source, tok, samples, spec, cache)
    where = _write_rejects(tally.reject_files, tally.counts.rejected, tally.removed, rejects_path)
    rows = concatenate_datasets(tally.parts) if len(tally.parts) > 1 else tally.parts[0]
    _check_rejects(len(rows), tally.counts.records, tally.counts.rejected, max_reject_ratio, where)
    return Encoded(rows, tally.counts, ConversationView(tally.convs), tally.entries if root is not None else [])


@dataclass
class _SourceTally:
    """What the sources tokenised so far add up to: samples, conversations, rejects and cache folders."""

    parts: list[Dataset] = field(default_factory=list)
    convs: list[Dataset] = field(default_factory=list)
    reject_files: list[Path] = field(default_factory=list)
    entries: list[Path] = field(default_factory=list)  # cache folders the samples are read from
    counts: EncodeCounts = field(default_factory=EncodeCounts)
    removed: int = 0

    def add(self, source: DataSource, tok: TokenizedFile, samples: Dataset) -> None:
        """Count in one tokenised source whose weighted samples are ``samples``."""
        self.removed += tok.removed_duplicates
        self.parts.append(samples)
        self.convs.append(tok.conversations)
        self.reject_files.append(tok.rejects_file)
        self.entries.append(tok.path)
        # supervised tokens follow the weighted sampling: weight 0.1 keeps a tenth of the file's samples
        self.counts.merge(tok.counts if source.weight == 1.0 else
                          replace(tok.counts, trained_tokens=trained_tokens_of(samples)))


def _log_source(source: DataSource, tok: TokenizedFile, samples: Dataset, spec: EncodeSpec, cache: bool) -> None:
    """Report one tokenised source: records to samples, the length policy, and where its cache is."""
    weight = f", weight {source.weight:g}" if source.weight != 1.0 else ""
    counts = tok.counts
    log.info(f"  {source.path}: {counts.records} records -> {len(samples)} samples{weight}, {counts.rejected} left "
             f"out, {counts.truncated} over max_length={spec.max_length} fitted by '{spec.truncation}' "
             f"({counts.trained_tokens_removed} trained tokens removed)")
    where = f"cache hit: {tok.path}" if tok.cache_hit else (f"cached: {tok.path}" if cache else "cache off")
    log.info(f"  tokenized {len(tok.samples)} samples ({where})")


def _check_rejects(kept: int, total: int, rejected: int, max_reject_ratio: float, where: str) -> None:
    """Refuse (``DataError``) when no sample is left or more than ``max_reject_ratio`` of the records were rejected."""
    if not kept:
        raise DataError(f"no usable training sample ({rejected} left out, see {where})")
    if total and rejected / total > max_reject_ratio:
        raise DataError(
            f"{rejected} of {total} records ({rejected / total:.0%}) were rejected, more than "
            f"data.max_reject_ratio={max_reject_ratio:g}; see {where} for each record and its reason"
        )


def _write_rejects(files: list[Path], rejected: int, removed: int, rejects_path: Path | None) -> str:
    """Show the first rejects, gather every file's rejects into ``rejects_path``; tell where they are listed."""
    for row in _first_rejects(files, 5):
        log.info(f"  skipped {row['source']}: [{row['code']}] {row['reason']}")
    where = str(rejects_path) if rejects_path else "`glmtune data check` for the full list"
    if (rejected or removed) and rejects_path:
        rejects_path.parent.mkdir(parents=True, exist_ok=True)
        with rejects_path.open("w", encoding="utf-8") as out:
            for path in files:
                with path.open(encoding="utf-8") as fh:
                    for line in fh:
                        out.write(line)
        log.info(f"  {rejected + removed} record(s) left out; every one is listed with its reason in {rejects_path}")
    elif rejected:
        log.info(f"  {rejected} record(s) would be left out")
    return where


def _first_rejects(files: list[Path], n: int) -> list[dict]:
    rows: list[dict] = []
    for path in files:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if len(rows) >= n:
                    return rows
                rows.append(json.loads(line))
    return rows


def weighted_indices(n: int, weight: float, seed: int) -> list[int]:
    """Repeat whole copies for the integer part of ``weight``, then a seeded sample for the fraction."""
    whole, frac = int(weight), weight - int(weight)
    extra = list(range(n))
    random.Random(seed + 7).shuffle(extra)
    return list(range(n)) * whole + extra[: round(frac * n)]


def weighted_dataset(rows: Dataset, weight: float, seed: int) -> Dataset:
    """``weighted_indices`` applied to an Arrow dataset (an index mapping; nothing is copied)."""
    return rows if weight == 1.0 else rows.select(weighted_indices(len(rows), weight, seed))


def split_validation(rows: Rows, size: int, seed: int) -> tuple[Rows, Rows]:
    """Deterministically hold ``size`` samples out (seeded shuffle); return (train, validation)."""
    if size <= 0:
        return rows, []
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[:size])
    del order
    keep = [i for i in range(len(rows)) if i not in held]
    return _take(rows, keep), _take(rows, sorted(held))


def replay_sample(rows: Rows, count: int, seed: int) -> Rows:
    """``count`` replay samples, drawn without replacement while possible, deterministic for ``seed``."""
    rng = random.Random(seed + 1)
    picked: list[int] = []
    while len(picked) < count and len(rows):
        batch = list(range(len(rows)))
        rng.shuffle(batch)
        picked.extend(batch[: count - len(picked)])
    return _take(rows, picked)


def _take(rows: Rows, indices: list[int]) -> Rows:
    return rows.select(indices) if isinstance(rows, Dataset) else [rows[i] for i in indices]


def to_dataset(*parts: Rows | None) -> Dataset:
    """One dataset with just the model inputs, the parts in order (Arrow parts stay memory-mapped)."""
    datasets = [_model_inputs(p) for p in parts if p is not None and len(p)]
    if not datasets:
        return _model_inputs([])
    return datasets[0] if len(datasets) == 1 else concatenate_datasets(datasets)


def _model_inputs(rows: Rows) -> Dataset:
    if isinstance(rows, Dataset):
        rows = rows.select_columns(["input_ids", "labels"])
        return rows if rows.features == MODEL_INPUTS else rows.cast(MODEL_INPUTS)
    return Dataset.from_dict({"input_ids": [r["input_ids"] for r in rows], "labels": [r["labels"] for r in rows]},
                             features=MODEL_INPUTS)


def limit_cache(cache_dir: str | None, max_gb: float, used: list[Encoded | None]) -> None:
    """Delete least recently used cache entries beyond ``max_gb`` GiB, keeping every entry this run reads."""
    if max_gb <= 0:
        return
    keep = {p for enc in used if enc is not None for p in getattr(enc, "cache_entries", [])}
    freed = prune_cache(cache_root(cache_dir), int(max_gb * 2**30), keep)
    if freed:
        log.info(f"cache: deleted {len(freed)} least recently used entries ({sum(e.size for e in freed) / 2**20:,.0f} "
                 f"MiB) to stay under data.cache_max_gb={max_gb:g}")
