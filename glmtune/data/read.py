"""Read any supported data file (glm4/openai/sharegpt/alpaca records in jsonl/json/csv/parquet) as GLM-4."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

from glmtune.data.conversation import Conversation, Problem, check_messages, normalise_message
from glmtune.data.formats import CONVERTERS, FORMATS, RecordError
from glmtune.data.formats.containers import READERS, Item, iter_items
from glmtune.data.read_result import ReadResult
from glmtune.errors import DataError

DETECT_SAMPLE = 100  # records looked at to decide a file's format
SUPPORTED_EXTENSIONS = tuple(READERS)
_OPENAI_ROLES = ("tool", "developer", "function")
_SHAREGPT_TAGS = ("human", "gpt", "function_call")


@dataclass
class ReadAnyResult(ReadResult):
    """A ``ReadResult`` that also says which record format the file was read as."""

    format: str | None = None


def candidate_formats(record: Any) -> tuple[str, ...]:
    """Every format that can read ``record``, most specific first (empty when none can)."""
    if not isinstance(record, dict):
        return ()
    if "conversations" in record:
        return ("sharegpt",)
    if "messages" in record:
        turns = record["messages"]
        dicts = [t for t in turns if isinstance(t, dict)] if isinstance(turns, list) else []
        if isinstance(record.get("system"), str) or any(
                "from" in t or "value" in t or _role(t) in _SHAREGPT_TAGS for t in dicts):
            return ("sharegpt",)
        if "tools" in record or "functions" in record or any(
                "tool_calls" in t or "function_call" in t or _role(t) in _OPENAI_ROLES
                or isinstance(t.get("content"), list) for t in dicts):
            return ("openai",)
        return ("glm4", "openai")  # plain role/content messages: both read them the same way
    if "instruction" in record or "output" in record:
        return ("alpaca",)
    return ()


def detect_format(record: Any) -> str | None:
    """Guess one record's format: "glm4", "openai", "sharegpt", "alpaca", or None."""
    found = candidate_formats(record)
    return found[0] if found else None


def detect_file_format(items: list[Item]) -> tuple[str | None, int]:
    """Pick the format most of the first parsed records fit; returns (format, records looked at)."""
    votes: Counter[str] = Counter()
    seen = 0
    for item in items:
        if seen >= DETECT_SAMPLE:
            break
        found = candidate_formats(item.record) if item.error is None else ()
        if found:
            seen += 1
            votes.update(found)
    if not votes:
        return None, seen
    best = max(votes.values())
    return next(f for f in FORMATS if votes[f] == best), seen


def read_any(path: str | Path, format: str | None = None, need_reply: bool = True) -> ReadAnyResult:
    """Read a .jsonl/.json/.csv/.parquet file of any supported format; every record is kept or rejected."""
    file_format, records = stream_read(path, format, need_reply)
    result = ReadAnyResult(format=file_format)
    for record in records:
        if isinstance(record, Conversation):
            result.conversations.append(record)
        else:
            result.problems.append(Problem(record["source"], record["code"], record["reason"]))
            result.rejected_records.append(record)
    return result


def stream_read(path: str | Path, format: str | None = None,
                need_reply: bool = True) -> tuple[str | None, Iterator[Conversation | dict]]:
    """``read_any`` one record at a time: (format, iterator of Conversations and reject rows), in file order.

    Only the records needed to detect the format are held in memory; .jsonl files are never loaded whole."""
    if format is not None and format not in CONVERTERS:
        raise DataError(f"unknown data format {format!r}; expected one of {', '.join(FORMATS)}")
    items = iter_items(path)
    head: list[Item] = []
    if format is None:
        seen = 0
        for item in items:
            head.append(item)
            if item.error is None and candidate_formats(item.record):
                seen += 1
                if seen >= DETECT_SAMPLE:
                    break
    file_format, sampled = (format, 0) if format else detect_file_format(head)
    return file_format, _records(chain(head, items), format, file_format, sampled, need_reply)


def _records(items: Iterator[Item], format: str | None, file_format: str | None, sampled: int,
             need_reply: bool) -> Iterator[Conversation | dict]:
    for item in items:
        if item.error is not None:
            yield _reject_row(item, *item.error)
            continue
        if format is None:
            problem = detection_problem(item.record, file_format, sampled)
            if problem:
                yield _reject_row(item, *problem)
                continue
        try:
            messages, extra = CONVERTERS[file_format](item.record)  # type: ignore[index]
        except RecordError as exc:
            yield _reject_row(item, exc.code, exc.reason)
            continue
        found = check_messages(messages, need_reply=need_reply)
        if found:
            code, reason = found[0]
            more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
            yield _reject_row(item, code, reason + more)
            continue
        messages = [normalise_message(m) for m in messages]
        yield Conversation(messages=messages, source=item.source, extra=extra)


def detection_problem(record: Any, file_format: str | None, sampled: int) -> tuple[str, str] | None:
    """Why a record does not fit the file's detected format, or None when it does."""
    if not isinstance(record, dict):
        return "not_an_object", f"expected a JSON object (a record), got {type(record).__name__}"
    found = candidate_formats(record)
    if not found or file_format is None:
        return "unknown_format", ("record matches no known format: expected 'messages' (glm4/openai), "
                                  "'conversations' (sharegpt) or 'instruction'/'output' (alpaca)")
    if file_format not in found:
        return "mixed_formats", (f"record looks like {found[0]} but the file reads as {file_format} "
                                 f"(the majority of its first {sampled} records); split the file or pass a format")
    return None


def _reject_row(item: Item, code: str, reason: str) -> dict:
    raw = item.raw
    if not isinstance(raw, str):
        try:
            raw = json.dumps(raw, ensure_ascii=False, default=str)
        except (ValueError, RecursionError):
            raw = repr(raw)
    return {"source": item.source, "code": code, "reason": reason, "raw": raw}


def _role(turn: dict[str, Any]) -> str | None:
    role = turn.get("role")
    return role if isinstance(role, str) else None
