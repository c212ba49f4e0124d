"""Streaming: read and tokenise lazily while training (a `datasets` IterableDataset), for data larger than RAM.

Nothing is tokenized up front. The planner sees the first ``PROBE_RECORDS`` records and an estimate of the
sample count from the files' sizes; validation is the first ``val_size`` samples of the stream (not a random
draw); training shuffles within a buffer of ``SHUFFLE_BUFFER`` samples; rejects are appended to the rejects
file as the first pass over the data meets them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from datasets import IterableDataset

from glmtune.config.loader import ConfigError
from glmtune.config.schema import DataSource, GlmtuneConfig
from glmtune.data.conversation import Conversation
from glmtune.data.read import stream_read
from glmtune.data.train_clean import CleanSettings
from glmtune.errors import DataError
from glmtune.layout.base import ChatLayout
from glmtune.layout.encode import (
    ConversationStep,
    EncodedOne,
    EncodeResult,
    EncodeSpec,
    Reject,
    counts_as_rejected,
    encode_reject,
)
from glmtune.train.dataset import MODEL_INPUTS, ConversationView, Encoded, as_spec
from glmtune.train.plan import DataStats

log = logging.getLogger(__name__)

STREAM_RAM_FRACTION = 0.5  # data.streaming: auto turns streaming on above this share of available RAM
PROBE_RECORDS = 1000
SHUFFLE_BUFFER = 1000


def resolve_streaming(setting: bool | str, sources: list[DataSource]) -> tuple[bool, str]:
    """Whether to stream, and why: ``auto`` compares the files' total size with the available RAM."""
    if setting != "auto":
        return bool(setting), "data.streaming set in config"
    import psutil

    size = sum(Path(s.path).stat().st_size for s in sources)
    available = psutil.virtual_memory().available
    on = size > STREAM_RAM_FRACTION * available
    return on, (f"training files {_gb(size)} {'>' if on else '<='} {STREAM_RAM_FRACTION:.0%} of "
                f"{_gb(available)} available RAM")


def _gb(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def check_streaming(config: GlmtuneConfig, sources: list[DataSource], why: str, extra_samples: bool = False) -> None:
    """Raise ``ConfigError`` naming every option that cannot work on a stream."""
    data, problems = config.data, []
    if config.training.max_steps <= 0:
        problems.append("training.max_steps must be > 0: a stream has no length, so epochs cannot be counted")
    if data.group_by_length is True:
        problems.append("data.group_by_length: true needs every sample's length up front; use packing or false")
    if any(s.weight != 1.0 for s in sources):
        problems.append("data.train_file weights repeat or subsample a whole file; remove them")
    if data.replay_file:
        problems.append("data.replay_file is mixed in proportion to the training set's size, unknown on a stream")
    if extra_samples:
        problems.append("extra training samples (documents) cannot be appended to a stream")
    for s in sources:
        if Path(s.path).suffix.lower() != ".jsonl":
            problems.append(f"{s.path}: streaming reads .jsonl line by line; convert the file to .jsonl")
    if problems:
        raise ConfigError(f"data.streaming is on ({why}), but:\n  " + "\n  ".join(problems)
                          + "\nfix these or set data.streaming: false")


Event = tuple[Conversation, EncodedOne] | Reject


def is_reject(event: Event) -> bool:
    """Whether ``event`` leaves its record out: a reject row, or a sample that trains nothing."""
    return isinstance(event, dict) or bool(event[1].problem)


def reject_row(event: Event) -> Reject:
    """The rejects-file row of a rejected ``event``."""
    return event if isinstance(event, dict) else encode_reject(event[0].source, event[1])


class SampleStream:
    """Callable generator of encoded samples over ``sources``; the first pass appends rejects to a file."""

    def __init__(self, sources: list[DataSource], spec: EncodeSpec, rejects_path: Path | None = None,
                 skip: int = 0, with_source: bool = False) -> None:
        self.sources, self.spec = sources, spec
        self.rejects_path, self.skip, self.with_source = rejects_path, skip, with_source
        self.steps: dict[str, ConversationStep] = {}  # the step of each file met so far (what its cleaner did)

    @property
    def done_marker(self) -> Path | None:
        """Exists once a full pass has written every reject."""
        return self.rejects_path.with_name(f".{self.rejects_path.name}.complete") if self.rejects_path else None

    def events(self) -> Iterator[Event]:
        """In file order: (conversation, encoded sample) for every prepared conversation, a reject row for the
        rest; each file gets a fresh ``ConversationStep``, exactly as the cache does."""
        for source in self.sources:
            step = self.steps[source.path] = self.spec.step()
            _, records = stream_read(source.path, None if source.format == "auto" else source.format)
            for record in records:
                yield step(record) if isinstance(record, Conversation) else record

    def __call__(self) -> Iterator[dict[str, Any]]:
        """Samples (``input_ids``, ``labels`` and, when asked, ``source``), the first ``skip`` left out."""
        marker = self.done_marker
        fh = self.rejects_path.open("a", encoding="utf-8") if marker and not marker.exists() else None
        kept = 0
        try:
            for event in self.events():
                if is_reject(event):
                    if fh:
                        fh.write(json.dumps(reject_row(event), ensure_ascii=False) + "\n")
                        fh.flush()
                    continue
                kept += 1
                if kept <= self.skip:
                    continue
                conv, one = event
                sample = {"input_ids": one.input_ids, "labels": one.labels}
                yield {**sample, "source": conv.source} if self.with_source else sample
            if fh and marker:
                marker.touch()
        finally:
            if fh:
                fh.close()


class StreamedData:
    """The training data of a streaming run: a probe for the plan, then validation and a lazy training set."""

    def __init__(self, sources: list[DataSource], spec: EncodeSpec | ChatLayout, *fields: Any,
                 clean: CleanSettings | None = None) -> None:
        """``StreamedData(sources, spec, rejects_path)``; the older field-by-field form
        ``(sources, layout, combine, max_length, truncation, values, rejects_path, clean=...)`` still works."""
        if isinstance(spec, EncodeSpec):
            rejects_path = fields[0] if fields else None
        else:
            combine, max_length, truncation, values, rejects_path = fields
            spec = as_spec(spec, combine, max_length, truncation, values, clean)
        self.sources, self.spec, self.rejects_path = sources, spec, rejects_path
        if rejects_path:
            rejects_path.parent.mkdir(parents=True, exist_ok=True)
            rejects_path.write_text("")
            marker = SampleStream(sources, spec, rejects_path=rejects_path).done_marker
            if marker:
                marker.unlink(missing_ok=True)

    def probe(self, max_reject_ratio: float) -> tuple[Encoded, DataStats]:
        """Encode the first ``PROBE_RECORDS`` records; return them and the estimated statistics of the whole."""
        result, convs = EncodeResult(), []
        stream = SampleStream(self.sources, self.spec)
        for event in islice(stream.events(), PROBE_RECORDS):
            result.records += 1
            if isinstance(event, dict):
                result.rejected += counts_as_rejected(event)
                continue
            convs.append(event[0])  # like the cache: every conversation that reached the encoder
            result.add(event[0].source, event[1])  # counts truncation and trained tokens as the cache does
            result.rejected += bool(event[1].problem)
        records, rejected = result.records, result.rejected
        rows = [{"input_ids": ids, "labels": labels, "source": source}
                for ids, labels, source in zip(result.input_ids, result.labels, result.sources)]
        for path, step in stream.steps.items():
            if step.summary():
                log.info(f"  {path}: {step.summary()}")
        if not rows:
            raise DataError(f"no usable training sample in the first {records} records ({rejected} left out)")
        if rejected / records > max_reject_ratio:
            raise DataError(f"{rejected} of the first {records} records were rejected, more than "
                            f"data.max_reject_ratio={max_reject_ratio:g}; run `glmtune data check` on the data")
        scale = self.estimated_records() / records if records >= PROBE_RECORDS else 1.0
        lengths = [len(r["input_ids"]) for r in rows]
        stats = DataStats(round(len(rows) * scale), round(result.trained_tokens * scale),
                          round(sum(lengths) * scale), max(lengths), lengths)
        log.info(f"  streaming: first {records} records -> {len(rows)} samples, {rejected} left out; about "
                 f"{stats.samples:,} samples in all (estimated from the file sizes)")
        return Encoded(rows, result, ConversationView(convs)), stats

    def estimated_records(self) -> float:
        """Records in all sources, extrapolated from the bytes of each file's first lines."""
        total = 0.0
        for source in self.sources:
            size = Path(source.path).stat().st_size
            with open(source.path, "rb") as fh:
                head = [line for line in islice(fh, PROBE_RECORDS * 2) if line.strip()][:PROBE_RECORDS]
            used = sum(len(line) for line in head)
            total += len(head) * size / used if used else 0
        return max(total, 1.0)

    def validation(self, size: int) -> list[dict]:
        """The first ``size`` samples of the stream (with their sources)."""
        return list(islice(SampleStream(self.sources, self.spec, with_source=True)(), size)) if size > 0 else []

    def training(self, skip: int, seed: int) -> IterableDataset:
        """The lazy training set: every sample after the first ``skip``, shuffled within a buffer."""
        stream = SampleStream(self.sources, self.spec, rejects_path=self.rejects_path, skip=skip)
        data = IterableDataset.from_generator(stream, features=MODEL_INPUTS)
        return data.shuffle(seed=seed, buffer_size=SHUFFLE_BUFFER)
