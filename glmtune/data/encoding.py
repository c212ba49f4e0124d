"""Find text that was decoded with the wrong encoding (mojibake) and say which encoding it really is.

Two mistakes are common with Chinese data:

* a GBK file read as UTF-8: most GBK lines are not valid UTF-8 (they become ``bad_encoding``), but a short
  line can be, and then "小猫" reads as "Сè" (each GBK character becomes one Latin, Cyrillic, Greek... letter);
* UTF-8 text read as cp1252/latin-1 and saved again as UTF-8: "猫" becomes "çŒ«".

Both are detected by re-encoding the suspicious characters and decoding them the other way: a repair that gives
CJK text, from characters of several scripts that no natural text mixes, is taken as mojibake. A single
character ("猫" read as "è") is only flagged when another line of the same file is GBK that is not valid UTF-8.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator
from typing import Any

from glmtune.data.formats.item import Item

ICONV_HINT = "convert the file to UTF-8, e.g. iconv -f GBK -t UTF-8 IN > OUT"


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" or "\u3000" <= ch <= "\u303f" \
        or "\uff00" <= ch <= "\uffef"


def _script(ch: str) -> str:
    """A coarse script name for a character in U+0080-U+07FF (what GBK bytes become when read as UTF-8)."""
    cp = ord(ch)
    for limit, name in ((0x00C0, "symbol"), (0x0250, "latin"), (0x0370, "phonetic"), (0x0400, "greek"),
                        (0x0530, "cyrillic"), (0x0590, "armenian"), (0x0600, "hebrew"), (0x0800, "arabic")):
        if cp < limit:
            return name
    return "other"


def gbk_reading(raw: bytes) -> str | None:
    """``raw`` read as GBK from its first CJK character on, when it decodes and has one; else None."""
    try:
        text = raw.decode("gbk")
    except UnicodeDecodeError:
        return None
    start = next((i for i, ch in enumerate(text) if _is_cjk(ch)), None)
    return None if start is None else text[start:].split('"', 1)[0]  # the string the CJK text starts


def _runs(text: str) -> list[str]:
    """Maximal runs of non-ASCII characters, in order."""
    runs: list[str] = []
    current = ""
    for ch in text:
        if ord(ch) >= 0x80:
            current += ch
        elif current:
            runs.append(current)
            current = ""
    return runs + ([current] if current else [])


def _gbk_repair(runs: list[str]) -> list[str] | None:
    """Each run of non-ASCII characters re-read as GBK, when every character becomes a GB2312 hanzi; else None."""
    if not runs or any(not 0xA0 <= ord(ch) < 0x800 for run in runs for ch in run):
        return None
    for ch in "".join(runs):  # GB2312 hanzi: lead byte 0xB0-0xF7, trail byte 0xA1-0xFE
        lead, trail = ch.encode("utf-8")
        if lead < 0xB0 or trail < 0xA1:
            return None
    try:
        fixed = [run.encode("utf-8").decode("gbk") for run in runs]
    except UnicodeDecodeError:
        return None
    return fixed if all(_is_cjk(ch) for run in fixed for ch in run) else None


def _latin_repair(text: str) -> str | None:
    """``text`` re-encoded as cp1252 (or latin-1) and read as UTF-8, when that decodes and changes it; else None."""
    if not any(ord(ch) >= 0x80 for ch in text):
        return None
    for codec in ("cp1252", "latin-1"):
        try:
            fixed = text.encode(codec).decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
        if len(fixed) < len(text):  # several characters were one: UTF-8 multi-byte sequences
            return fixed
    return None


def mojibake(text: str, gbk_file: bool = False) -> str | None:
    """Why ``text`` looks mis-decoded (naming the encoding and the repaired text), or None when it looks fine.

    ``gbk_file``: another line of the file is GBK, so a single GBK character read as UTF-8 is flagged too."""
    fixed = _latin_repair(text)
    if fixed is not None:
        return (f"text looks like UTF-8 that was read as cp1252/latin-1 and saved again: {_preview(text)} reads "
                f"as {_preview(fixed)} once undone; re-export the file from its original UTF-8 source")
    runs = _runs(text)
    repaired = _gbk_repair(runs)
    if repaired is None:
        return None
    odd = "".join(runs)
    scripts = {_script(ch) for ch in odd} - {"symbol"}  # ¿ ¡ ° ± sit beside any script
    if gbk_file or (len(odd) >= 2 and len(scripts) >= 2):
        return (f"text looks like GBK read as UTF-8: {_preview(' … '.join(runs))} are the bytes of "
                f"{_preview(' … '.join(repaired))} in GBK; {ICONV_HINT}")
    return None


def _preview(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def record_text(value: Any) -> str:
    """Every string value inside a parsed record, in document order, joined with newlines."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return "\n".join(text for text in (record_text(v) for v in value) if text)
    return ""


def _mark(item: Item, gbk_file: bool) -> Item:
    if item.error is not None or item.record is None:
        return item
    why = mojibake(record_text(item.record), gbk_file)
    if why is None:
        return item
    return Item(item.source, raw=item.raw, error=("mojibake", why))


def mark_mojibake(items: Iterable[Item]) -> Iterator[Item]:
    """Turn records whose text looks mis-decoded into ``mojibake`` problems, line by line (streaming)."""
    gbk_file = False
    for item in items:
        if item.error is not None and item.error[0] == "bad_encoding" and "GBK" in item.error[1]:
            gbk_file = True
        yield _mark(item, gbk_file)


def flag_mojibake(items: list[Item]) -> None:
    """In place: once any line is GBK, flag every record before it too whose text reads as GBK."""
    if not any(i.error is not None and i.error[0] == "bad_encoding" and "GBK" in i.error[1] for i in items):
        return
    for n, item in enumerate(items):
        items[n] = _mark(item, gbk_file=True)
