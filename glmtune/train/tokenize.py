"""Tokenise one data file through `datasets`: Arrow on disk, multi-process ``map``, cached by content hash.

A cache entry is a folder named by the hash of everything the samples depend on (see ``cache_parts``):
``conversations.arrow`` (normalised messages as JSON), ``encoded*.arrow`` (one file per ``map`` process),
``kept.npy`` (rows that train something, when some do not), ``rejects.jsonl`` and ``meta.json``, written
last. Entries are built in a temporary sibling folder and renamed into place, so a crash leaves no half entry.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, Features, List, Value, concatenate_datasets
from tqdm.auto import tqdm

from glmtune.config.schema import DataSource
from glmtune.data.cache import cache_key, code_fingerprint, file_sha256, mark_used
from glmtune.data.conversation import Conversation
from glmtune.data.read import stream_read
from glmtune.data.train_clean import CleanSettings, clean_summary
from glmtune.errors import DataError
from glmtune.layout.base import ChatLayout
from glmtune.layout.encode import ConversationStep, EncodeCounts, EncodeSpec, encode_reject
from glmtune.log import is_main_process

WRITE_BATCH = 1000  # rows per Arrow record batch and per ``map`` batch: bounds memory, not data size
SMALL_DATA = 20_000  # conversations each extra ``map`` process must have; below it encoding stays in-process
MAX_PROC = 8
CONVERSATIONS = pa.schema([("messages", pa.string()), ("source", pa.string())])
ENCODED = Features({
    "input_ids": List(Value("int32")), "labels": List(Value("int32")), "source": Value("string"),
    "length": Value("int32"), "trained": Value("int32"), "truncated": Value("bool"),
    "removed": Value("int32"), "code": Value("string"), "reason": Value("string"),
})
SAMPLE_COLUMNS = ["input_ids", "labels", "source", "length"]


@dataclass
class TokenizedFile:
    """One file in the cache: its kept samples (memory-mapped Arrow) and what happened on the way."""

    samples: Dataset  # input_ids, labels, source, length; file order
    conversations: Dataset  # messages (JSON text), source: every conversation that reached the encoder
    counts: EncodeCounts
    rejects_file: Path
    path: Path
    cache_hit: bool
    cleaning: str = ""  # what the training-time repairs and filters did (empty when nothing)
    removed_duplicates: int = 0


class Encoder:
    """The ``Dataset.map`` function: a batch of JSON conversations to samples plus per-row bookkeeping."""

    def __init__(self, spec: EncodeSpec) -> None:
        self.spec = spec

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        """Encode every conversation of ``batch``; dropped ones get empty ids and a (code, reason)."""
        out: dict[str, list] = {name: [] for name in ENCODED}
        for messages, source in zip(batch["messages"], batch["source"]):
            one = self.spec.encode(json.loads(messages), source)
            reject = encode_reject(source, one) if one.problem else {"code": "", "reason": ""}
            ids, labels = ([], []) if one.problem else (one.input_ids, one.labels)
            for name, value in (("input_ids", ids), ("labels", labels), ("source", source),
                                ("length", len(ids)), ("trained", one.trained), ("truncated", one.truncated),
                                ("removed", one.trained_removed), ("code", reject["code"]),
                                ("reason", reject["reason"])):
                out[name].append(value)
        return out


def resolve_num_proc(num_proc: int | str, conversations: int) -> int:
    """``auto``: one process per ``SMALL_DATA`` conversations, at most the usable CPUs (and 8); else as set."""
    if num_proc != "auto":
        return max(1, min(int(num_proc), conversations))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, MAX_PROC, math.ceil(conversations / SMALL_DATA) if conversations > SMALL_DATA else 1))


def cache_parts(source: DataSource, tokenizer_fp: str, spec: EncodeSpec) -> dict[str, Any]:
    """Everything a file's samples depend on; its hash names the cache entry."""
    return {"path": source.path, "sha256": file_sha256(source.path), "format": source.format,
            "tokenizer": tokenizer_fp, **spec.key_parts(), "code": code_fingerprint()}


def tokenize_file(source: DataSource, spec: EncodeSpec, tokenizer_fp: str, root: Path | None,
                  num_proc: int | str = "auto") -> TokenizedFile:
    """Tokenise ``source`` by ``spec`` into the cache under ``root`` (a throw-away folder when ``root`` is None)."""
    if not Path(source.path).is_file():
        raise DataError(f"data file not found: {source.path}")
    key = cache_key(cache_parts(source, tokenizer_fp, spec))
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="glmtune-tokenized-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
    entry = root / key
    if (entry / "meta.json").is_file():
        mark_used(entry)
        return load_entry(entry, cache_hit=True)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{key}.tmp-", dir=root))
    try:
        build_entry(tmp, source, spec, num_proc, key)
        if (entry / "meta.json").is_file():  # another run finished the same entry meanwhile
            shutil.rmtree(tmp)
        else:
            shutil.rmtree(entry, ignore_errors=True)
            tmp.rename(entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_entry(entry, cache_hit=False)


def tokenise_file(source: DataSource, layout: ChatLayout, tokenizer_fp: str, combine: bool, max_length: int,
                  truncation: str, values: dict[str, str], root: Path | None,
                  num_proc: int | str = "auto", clean: CleanSettings | None = None) -> TokenizedFile:
    """``tokenize_file`` with the spec given field by field (the form `glmtune tokenize` still calls)."""
    spec = EncodeSpec(layout, combine, max_length, truncation, values or {}, clean)
    return tokenize_file(source, spec, tokenizer_fp, root, num_proc)


def build_entry(tmp: Path, source: DataSource, spec: EncodeSpec, num_proc: int | str, key: str) -> None:
    """Read, check and encode ``source`` into the folder ``tmp``; ``meta.json`` is written last."""
    fmt, records = stream_read(source.path, None if source.format == "auto" else source.format)
    main = is_main_process()  # progress on rank 0 only, like the training bar
    with tqdm(records, desc=f"reading {source.path}", unit=" records", disable=not main, leave=False) as bar:
        counts = write_conversations(bar, spec.step(), tmp)
    convs = Dataset.from_file(str(tmp / "conversations.arrow"))
    procs = resolve_num_proc(num_proc, len(convs))
    if len(convs):
        quiet = not main and datasets.is_progress_bar_enabled()
        if quiet:
            datasets.disable_progress_bars()
        try:
            encoded = convs.map(
                Encoder(spec), batched=True, batch_size=WRITE_BATCH,
                num_proc=procs if procs > 1 else None, remove_columns=["messages", "source"], features=ENCODED,
                cache_file_name=str(tmp / "encoded.arrow"), writer_batch_size=WRITE_BATCH, new_fingerprint=key,
                load_from_cache_file=False, desc=f"tokenising {source.path}")
        finally:
            if quiet:
                datasets.enable_progress_bars()
        table = encoded.data
        kept_mask = pc.equal(table.column("code"), "").to_numpy(zero_copy_only=False)
        dropped = np.flatnonzero(~kept_mask)
        if len(dropped):
            np.save(tmp / "kept.npy", np.flatnonzero(kept_mask))
        rows = encoded.select(dropped).select_columns(["source", "code", "reason"]) if len(dropped) else []
        with (tmp / "rejects_encode.jsonl").open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        stats = {name: int(pc.sum(table.column(name).cast(pa.int64())).as_py() or 0)
                 for name in ("trained", "truncated", "removed")}
        counts.update(samples=int(kept_mask.sum()), dropped=len(dropped), **stats)
        del encoded, table
    else:
        counts.update(samples=0, dropped=0, trained=0, truncated=0, removed=0)
    with (tmp / "rejects.jsonl").open("w", encoding="utf-8") as out:
        for part in ("rejects_read.jsonl", "rejects_placeholder.jsonl", "rejects_clean.jsonl", "rejects_encode.jsonl"):
            if (tmp / part).is_file():
                with (tmp / part).open(encoding="utf-8") as fh:
                    shutil.copyfileobj(fh, out)
                (tmp / part).unlink()
    meta = {"source": source.path, "format": fmt, "num_proc": procs, **counts,
            "rejected": counts["read_rejected"] + counts["placeholder_rejected"] + counts["conflicts"]
            + counts["dropped"]}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))


def write_conversations(records: Iterator[Conversation | dict], step: ConversationStep, tmp: Path) -> dict[str, Any]:
    """Stream prepared (filled, cleaned) conversations into ``conversations.arrow`` and rejects into JSONL."""
    counts: dict[str, Any] = {"records": 0, "read_rejected": 0}
    messages: list[str] = []
    sources: list[str] = []
    with (tmp / "rejects_read.jsonl").open("w", encoding="utf-8") as read_fh, \
            (tmp / "rejects_placeholder.jsonl").open("w", encoding="utf-8") as hole_fh, \
            (tmp / "rejects_clean.jsonl").open("w", encoding="utf-8") as clean_fh, \
            pa.OSFile(str(tmp / "conversations.arrow"), "wb") as sink, \
            pa.ipc.new_stream(sink, CONVERSATIONS) as writer:
        for record in records:
            counts["records"] += 1
            if not isinstance(record, Conversation):
                read_fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                counts["read_rejected"] += 1
                continue
            kept, reject = step.prepare(record)
            if kept is None:
                fh = hole_fh if (reject or {}).get("code") == "unfilled_placeholder" else clean_fh
                fh.write(json.dumps(reject, ensure_ascii=False) + "\n")
                continue
            messages.append(json.dumps(kept.messages, ensure_ascii=False))
            sources.append(record.source)
            if len(messages) >= WRITE_BATCH:
                writer.write_batch(pa.record_batch([messages, sources], schema=CONVERSATIONS))
                messages, sources = [], []
        if messages:
            writer.write_batch(pa.record_batch([messages, sources], schema=CONVERSATIONS))
    counts.update(placeholder_rejected=step.placeholder_rejected, duplicates=step.duplicates,
                  conflicts=step.conflicts, repairs=step.repairs)
    return counts


def load_entry(entry: Path, cache_hit: bool) -> TokenizedFile:
    """Open a finished cache entry, memory-mapped."""
    meta = json.loads((entry / "meta.json").read_text())
    files = sorted(entry.glob("encoded*.arrow"))
    if files:
        encoded = concatenate_datasets([Dataset.from_file(str(f)) for f in files])
    else:
        encoded = Dataset.from_dict({name: [] for name in ENCODED}, features=ENCODED)
    if (entry / "kept.npy").is_file():
        encoded = encoded.select(np.load(entry / "kept.npy"))
    convs = Dataset.from_file(str(entry / "conversations.arrow"))
    counts = EncodeCounts(meta["records"], meta["rejected"], meta["truncated"], meta["trained"], meta["removed"])
    return TokenizedFile(encoded.select_columns(SAMPLE_COLUMNS), convs, counts, entry / "rejects.jsonl", entry,
                         cache_hit, clean_summary(meta.get("repairs", {}), meta.get("duplicates", 0),
                                                  meta.get("conflicts", 0)), meta.get("duplicates", 0))


def trained_tokens_of(samples: Dataset) -> int:
    """Supervised tokens (labels other than -100) of ``samples``, index mappings (weighting, kept rows) included."""
    total = 0
    for batch in samples.select_columns(["labels"]).with_format("arrow").iter(batch_size=WRITE_BATCH):
        flat = pc.list_flatten(batch.column("labels"))
        total += int(pc.sum(pc.not_equal(flat, -100).cast(pa.int64())).as_py() or 0)
    return total


def iter_conversations(convs: Dataset) -> Iterator[Conversation]:
    """The conversations of a tokenized file, decoded batch by batch."""
    for batch in convs.iter(batch_size=WRITE_BATCH):
        for messages, source in zip(batch["messages"], batch["source"]):
            yield Conversation(json.loads(messages), source)
