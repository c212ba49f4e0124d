"""Degeneration metrics for generated answers: loops, finish reasons, distinct-n and lengths.

Everything here counts *units*: see :func:`units`. Loop definition (see :func:`find_loop`): a text loops
when some block of ``n`` consecutive units (``1 <= n <= max_n``) is immediately repeated, back to back,
at least ``min_repeats`` times in total, and those repeats cover at least ``min_span`` units.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, NamedTuple

_CJK = (
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3400-\u4dbf"  # CJK Extension A
    "\u4e00-\u9fff"  # CJK Unified Ideographs
    "\uac00-\ud7af"  # Hangul syllables
    "\uf900-\ufaff"  # CJK Compatibility Ideographs
    "\U00020000-\U0003134f"  # CJK Extensions B-H
)
_UNIT_RE = re.compile(rf"[{_CJK}]|(?:(?![{_CJK}])\w)+")

DEFAULT_MIN_REPEATS = 3
DEFAULT_MIN_SPAN = 6
DEFAULT_MAX_N = 10


def units(text: str) -> list[str]:
    """Split text into units: each CJK character alone, other words as runs of letters/digits/underscore.

    Whitespace, punctuation and symbols separate units and are not units themselves, so
    ``units("我爱Python 3.11!") == ["我", "爱", "Python", "3", "11"]``. Case is kept.
    """
    return _UNIT_RE.findall(text)


class Loop(NamedTuple):
    """Where a loop was found: first unit index, block length ``n`` and back-to-back copies of the block."""

    start: int
    n: int
    repeats: int


def _check_params(min_repeats: int, min_span: int, max_n: int) -> None:
    """Reject loop parameters that make no sense."""
    if min_repeats < 2:
        raise ValueError(f"min_repeats must be at least 2, got {min_repeats}")
    if max_n < 1:
        raise ValueError(f"max_n must be at least 1, got {max_n}")
    if min_span < 1:
        raise ValueError(f"min_span must be at least 1, got {min_span}")


def find_loop(
    text: str,
    min_repeats: int = DEFAULT_MIN_REPEATS,
    min_span: int = DEFAULT_MIN_SPAN,
    max_n: int = DEFAULT_MAX_N,
) -> Loop | None:
    """Return the first (shortest ``n``, then leftmost) loop in ``text``, or None.

    With ``u = units(text)``, the text loops when there are ``n`` in ``1..max_n``, a start ``i`` and
    ``k >= min_repeats`` with ``k * n >= min_span`` such that ``u[i + j*n : i + (j+1)*n]`` equals
    ``u[i : i+n]`` for every ``j < k``, i.e. the block ``u[i:i+n]`` occurs ``k`` times back to back.
    Defaults (3 copies, 6 units, blocks up to 10 units) flag "好的好的好的" and
    "I am Nova. I am Nova. I am Nova." but not "哈哈", "哈哈哈", "very very very" or "1 + 1 = 2.".
    """
    _check_params(min_repeats, min_span, max_n)
    u = units(text)
    size = len(u)
    for n in range(1, max_n + 1):
        # A run of r consecutive positions j with u[j] == u[j+n], starting at i, means u[i : i+r+n]
        # has period n, i.e. it holds (r + n) // n full back-to-back copies of the block u[i:i+n].
        run = 0
        for j in range(size - n + 1):
            if j + n < size and u[j] == u[j + n]:
                run += 1
                continue
            if run:
                repeats = (run + n) // n
                if repeats >= min_repeats and repeats * n >= min_span:
                    return Loop(start=j - run, n=n, repeats=repeats)
            run = 0
    return None


def has_loop(
    text: str,
    min_repeats: int = DEFAULT_MIN_REPEATS,
    min_span: int = DEFAULT_MIN_SPAN,
    max_n: int = DEFAULT_MAX_N,
) -> bool:
    """True when some block of 1..max_n units repeats back to back min_repeats+ times over min_span+ units."""
    return find_loop(text, min_repeats=min_repeats, min_span=min_span, max_n=max_n) is not None


def loop_rate(
    texts: list[str],
    min_repeats: int = DEFAULT_MIN_REPEATS,
    min_span: int = DEFAULT_MIN_SPAN,
    max_n: int = DEFAULT_MAX_N,
) -> float:
    """Share of texts for which :func:`has_loop` is true; 0.0 for no texts."""
    if not texts:
        return 0.0
    flagged = sum(has_loop(t, min_repeats=min_repeats, min_span=min_span, max_n=max_n) for t in texts)
    return flagged / len(texts)


def finish_reason_share(reasons: list[str]) -> dict[str, float]:
    """Share of each finish reason; "stop" and "length" are always present (0.0 when absent)."""
    counts = Counter(str(r) for r in reasons)
    total = len(reasons)
    shares = {"stop": 0.0, "length": 0.0}
    for reason, count in counts.items():
        shares[reason] = count / total
    return shares


def distinct_n(texts: list[str], n: int) -> float:
    """Unique n-grams / total n-grams over the units of all texts pooled (n-grams never span two texts)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        u = units(text)
        for i in range(len(u) - n + 1):
            seen.add(tuple(u[i : i + n]))
            total += 1
    return len(seen) / total if total else 0.0


def length_stats(predictions: list[str], references: list[str] | None = None) -> dict[str, float]:
    """Mean prediction and reference length in units, and their ratio (0.0 when the reference mean is 0)."""
    pred_mean = _mean_units(predictions)
    if references is None:
        return {"pred_len_mean": pred_mean}
    ref_mean = _mean_units(references)
    return {
        "pred_len_mean": pred_mean,
        "ref_len_mean": ref_mean,
        "len_ratio": pred_mean / ref_mean if ref_mean else 0.0,
    }


def _mean_units(texts: list[str]) -> float:
    """Mean number of units per text; 0.0 for no texts."""
    return sum(len(units(t)) for t in texts) / len(texts) if texts else 0.0


def degeneration_metrics(
    predictions: list[str],
    references: list[str] | None = None,
    finish_reasons: list[str] | None = None,
    min_repeats: int = DEFAULT_MIN_REPEATS,
    min_span: int = DEFAULT_MIN_SPAN,
    max_n: int = DEFAULT_MAX_N,
    guard_cut: list[bool] | None = None,
) -> dict[str, Any]:
    """Loop rate (with looping indices), distinct-1/2, length stats and finish-reason shares in one dict.

    A reply loops when its text repeats (:func:`has_loop`) or when the generation's repetition guard cut it
    (``guard_cut``): the guard also stops loops that repeat no whole word, such as "LilyLilyLily...".
    """
    if references is not None and len(references) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if finish_reasons is not None and len(finish_reasons) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions but {len(finish_reasons)} finish reasons")
    if guard_cut is not None and len(guard_cut) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions but {len(guard_cut)} guard verdicts")
    cut = guard_cut or [False] * len(predictions)
    looping = [
        i
        for i, text in enumerate(predictions)
        if cut[i] or has_loop(text, min_repeats=min_repeats, min_span=min_span, max_n=max_n)
    ]
    result: dict[str, Any] = {
        "n": len(predictions),
        "loop_rate": len(looping) / len(predictions) if predictions else 0.0,
        "looping_indices": looping,
        "guard_cut": sum(cut),
        "distinct-1": distinct_n(predictions, 1),
        "distinct-2": distinct_n(predictions, 2),
    }
    result.update(length_stats(predictions, references))
    if finish_reasons is not None:
        result["finish_reason"] = finish_reason_share(finish_reasons)
    return result
