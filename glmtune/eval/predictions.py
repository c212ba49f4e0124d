"""Predictions files: read and check them, and score them (text metrics, degeneration, end tokens)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from glmtune.data.formats.containers import jsonl_lines
from glmtune.errors import DataError
from glmtune.eval.degeneration import (
    DEFAULT_MAX_N,
    DEFAULT_MIN_REPEATS,
    DEFAULT_MIN_SPAN,
    degeneration_metrics,
)
from glmtune.eval.text_metrics import text_metrics
from glmtune.infer.reply_text import CLOSE, split_reasoning

END_TOKENS: tuple[str, ...] = ("<|user|>", "<|observation|>", "<|endoftext|>")


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """Read predictions JSONL rows: ``prediction`` required; reference, finish_reason, stop_token, reasoning
    optional."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"predictions file not found: {file}")
    rows: list[dict[str, Any]] = []
    for where, text, _, bad in jsonl_lines(file):
        if text is None:
            raise DataError(f"{where}: {bad}")
        rows.append(_check_row(text, where))
    if not rows:
        raise DataError(f"{file}: no predictions (the file is empty)")
    return rows


def _check_row(text: str, where: str) -> dict[str, Any]:
    """Parse and check one predictions line; raise DataError naming ``where``."""
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg})") from exc
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if "prediction" not in row:
        raise DataError(f'{where}: no "prediction" field')
    if not isinstance(row["prediction"], str):
        raise DataError(f'{where}: "prediction" must be a string, got {type(row["prediction"]).__name__}')
    for field in ("reference", "finish_reason", "stop_token", "reasoning"):
        if row.get(field) is not None and not isinstance(row[field], str):
            raise DataError(f'{where}: "{field}" must be a string or null, got {type(row[field]).__name__}')
    if row.get("loop") is not None and not isinstance(row["loop"], bool):
        raise DataError(f'{where}: "loop" must be true, false or null, got {type(row["loop"]).__name__}')
    return row


def end_token_shares(stop_tokens: list[str | None]) -> dict[str, float]:
    """Share of replies ended by each GLM-4 end token, by another stop token ("other") or by none ("none")."""
    n = len(stop_tokens)
    shares = {tok: sum(s == tok for s in stop_tokens) / n if n else 0.0 for tok in END_TOKENS}
    shares["other"] = sum(s is not None and s not in END_TOKENS for s in stop_tokens) / n if n else 0.0
    shares["none"] = sum(s is None for s in stop_tokens) / n if n else 0.0
    return shares


def score_predictions(
    rows: list[dict[str, Any]],
    min_repeats: int = DEFAULT_MIN_REPEATS,
    min_span: int = DEFAULT_MIN_SPAN,
    max_n: int = DEFAULT_MAX_N,
) -> dict[str, Any]:
    """Text metrics (rows with a reference), degeneration metrics and end-token shares of prediction rows.

    Every metric scores the answer alone: reasoning (a row's ``reasoning``, or an inline ``<think>`` block in
    its prediction) is measured apart, under ``reasoning``."""
    split = [_answer_and_reasoning(r) for r in rows]
    preds = [answer for answer, _ in split]
    with_ref = [i for i, r in enumerate(rows) if isinstance(r.get("reference"), str)]
    result: dict[str, Any] = {
        "n": len(rows),
        "text": text_metrics([preds[i] for i in with_ref], [rows[i]["reference"] for i in with_ref])
        if with_ref
        else None,
    }
    thought = reasoning_stats([thought for _, thought in split], any("reasoning" in r for r in rows))
    if thought is not None:
        result["reasoning"] = thought
    all_refs = len(with_ref) == len(rows)
    reasons = [r.get("finish_reason") for r in rows]
    result["degeneration"] = degeneration_metrics(
        preds,
        [r["reference"] for r in rows] if all_refs else None,
        finish_reasons=reasons if all(isinstance(x, str) for x in reasons) else None,
        guard_cut=[r.get("loop") is True for r in rows],
        min_repeats=min_repeats,
        min_span=min_span,
        max_n=max_n,
    )
    has_stop = any("stop_token" in r for r in rows)
    result["end_tokens"] = end_token_shares([r.get("stop_token") for r in rows]) if has_stop else None
    return result


def _answer_and_reasoning(row: dict[str, Any]) -> tuple[str, str]:
    """A row's answer and its reasoning (the ``reasoning`` field, else what an inline think block held)."""
    prediction = row["prediction"]
    inline, answer = split_reasoning(prediction, "any") if CLOSE in prediction else ("", prediction)
    return answer, row.get("reasoning") or inline


def reasoning_stats(reasonings: list[str], thinking: bool = False) -> dict[str, Any] | None:
    """Share of replies with reasoning and its mean length in characters; None when no reply reasons and
    the rows come from no thinking template (``thinking``)."""
    lengths = [len(r.strip()) for r in reasonings if r.strip()]
    if not lengths and not thinking:
        return None
    n = len(reasonings)
    return {"n_with": len(lengths), "share": len(lengths) / n if n else 0.0,
            "chars_mean": sum(lengths) / len(lengths) if lengths else 0.0,
            "chars_mean_all": sum(lengths) / n if n else 0.0}


def output_paths(out: str | Path) -> tuple[Path, Path]:
    """``metrics.json`` path and the predictions path beside it (``<stem>.predictions.jsonl``).

    ``out`` ending in ``.json`` is the metrics file itself; anything else is a folder for ``metrics.json``.
    """
    out = Path(out)
    metrics = out if out.suffix.lower() == ".json" else out / "metrics.json"
    return metrics, metrics.with_name(f"{metrics.stem}.predictions.jsonl")
