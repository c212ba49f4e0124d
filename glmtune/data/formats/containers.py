"""File containers (.jsonl, .json, .csv, .parquet) read into raw records, each with the place it came from."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from glmtune.data.encoding import ICONV_HINT, gbk_reading, mark_mojibake
from glmtune.data.formats.item import Item
from glmtune.errors import DataError

# Columns that hold JSON when they come from a flat table (CSV cells, parquet string columns).
JSON_COLUMNS = ("messages", "conversations", "history")


def read_items(path: str | Path) -> list[Item]:
    """Read every record of a data file; file-level problems raise ``DataError``, record-level ones are Items."""
    return list(iter_items(path))


def iter_items(path: str | Path) -> Iterator[Item]:
    """Records of a data file one by one; .jsonl is read lazily (constant memory), other containers whole.

    File-level problems (missing file, unknown extension) raise ``DataError`` at once, not on first use."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unsupported data file extension {path.suffix!r}; "
                        f"supported: {', '.join(READERS)}")
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    if reader is read_jsonl:
        return mark_mojibake(iter_jsonl(path))
    return mark_mojibake(reader(path))


def read_jsonl(path: Path) -> list[Item]:
    """One JSON record per line (``path:line``); blank lines are skipped, bad bytes are per-line problems."""
    return list(iter_jsonl(path))


def jsonl_lines(path: Path) -> Iterator[tuple[str, str | None, bytes, str | None]]:
    """Each non-blank line of a JSONL file as ``(path:line, text, raw bytes, None)``, or with ``text`` None and
    the reason when the line is not UTF-8; a byte-order mark on the first line is dropped."""
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            source = f"{path}:{lineno}"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield source, None, raw, f"not valid UTF-8 ({exc.reason} at byte {exc.start})"
                continue
            if lineno == 1:
                text = text.removeprefix("\ufeff")
            if text.strip():
                yield source, text, raw, None


def iter_jsonl(path: Path) -> Iterator[Item]:
    """``read_jsonl`` one line at a time."""
    for source, text, raw, bad in jsonl_lines(path):
        if text is None:
            reason = f"{bad}{_encoding_hint(raw)}"
            yield Item(source, raw=raw.decode("utf-8", errors="replace"), error=("bad_encoding", reason))
        else:
            yield _parse_line(source, text)


def _parse_line(source: str, text: str) -> Item:
    raw = text.rstrip("\r\n")
    try:
        return Item(source, record=json.loads(text), raw=raw)
    except json.JSONDecodeError as exc:
        return Item(source, raw=raw, error=("malformed_json", f"invalid JSON: {exc.msg} (column {exc.colno})"))
    except RecursionError:
        return Item(source, raw=raw, error=("malformed_json", "invalid JSON: nested too deeply"))


def read_json(path: Path) -> list[Item]:
    """A top-level list of records, or one object (``path:record N``); a JSON Lines body is read as such."""
    text = _decode(path)
    if not text.strip():
        raise DataError(f"{path}: file is empty; expected a JSON list of records")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and _looks_like_jsonl(text):
            # JSON Lines saved as .json (what datasets' to_json writes): report per line.
            return [_parse_line(f"{path}:{n}", line) for n, line in enumerate(text.split("\n"), start=1)
                    if line.strip()]
        raise DataError(f"{path}:{exc.lineno}: invalid JSON at line {exc.lineno}, column {exc.colno}: "
                        f"{exc.msg}") from None
    except RecursionError:
        raise DataError(f"{path}: invalid JSON: nested too deeply") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of records (or one object), got {type(data).__name__}")
    return [Item(f"{path}:record {n}", record=rec, raw=rec) for n, rec in enumerate(data, start=1)]


def _looks_like_jsonl(text: str) -> bool:
    first = next((line for line in text.split("\n") if line.strip()), "")
    try:
        return isinstance(json.loads(first), dict)
    except (ValueError, RecursionError):
        return False


def read_csv(path: Path) -> list[Item]:
    """CSV with a header row (``path:line`` of the row's first line); JSON columns are decoded per row."""
    text = _decode(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    items: list[Item] = []
    try:
        header = next(reader, None)
        if header is None:
            return items
        header = [name.strip() for name in header]
        end = reader.line_num
        for row in reader:
            source, end = f"{path}:{end + 1}", reader.line_num
            if not row:
                continue
            if len(row) != len(header):
                reason = f"row has {len(row)} fields but the header has {len(header)}"
                items.append(Item(source, raw=row, error=("bad_csv_row", reason)))
                continue
            items.append(_table_item(source, dict(zip(header, row, strict=True))))
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: CSV error: {exc}") from None
    return items


def read_parquet(path: Path) -> list[Item]:
    """Parquet rows as records (``path:row N``); nulls that pyarrow fills into structs are dropped."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow comes with datasets
        raise DataError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from None
    try:
        rows = pq.read_table(path).to_pylist()
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot read parquet: {exc}") from None
    return [_table_item(f"{path}:row {n}", _drop_nulls(row)) for n, row in enumerate(rows, start=1)]


def _table_item(source: str, row: dict[str, Any]) -> Item:
    record = dict(row)
    for key in JSON_COLUMNS:
        value = record.get(key)
        if not isinstance(value, str):
            continue
        if not value.strip() and key == "history":
            del record[key]
            continue
        try:
            record[key] = json.loads(value)
        except (ValueError, RecursionError) as exc:
            return Item(source, raw=row, error=("malformed_json", f"column '{key}' is not valid JSON ({exc})"))
    return Item(source, record=record, raw=row)


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start}){_encoding_hint(data)}; "
                        "save the file as UTF-8") from None


def _encoding_hint(raw: bytes) -> str:
    """``; the bytes read as GBK: '...'`` when they do, so the message names the file's real encoding."""
    text = gbk_reading(raw)
    if text is None:
        return ""
    text = text.strip()
    return f"; the bytes read as GBK: {text[:40]!r}{'...' if len(text) > 40 else ''}; {ICONV_HINT}"


READERS: dict[str, Callable[[Path], list[Item]]] = {
    ".jsonl": read_jsonl,
    ".json": read_json,
    ".csv": read_csv,
    ".parquet": read_parquet,
}
