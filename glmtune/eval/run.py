"""``glmtune eval``: score predictions (given, or generated from a model and data), identity and retention."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from glmtune.errors import DataError, UserError
from glmtune.eval.degeneration import (
    DEFAULT_MAX_N,
    DEFAULT_MIN_REPEATS,
    DEFAULT_MIN_SPAN,
)
from glmtune.eval.identity import identity_scores, load_probes
from glmtune.eval.metrics_table import print_metrics
from glmtune.eval.predictions import output_paths, read_predictions, score_predictions
from glmtune.eval.retention import base_and_tuned_answers, load_general, retention_scores
from glmtune.identity_names import LEAK_MAKERS, LEAK_NAMES

log = logging.getLogger(__name__)

def _check_args(
    model: str | None,
    adapter: str | None,
    data: str | None,
    predictions: str | None,
    identity_name: str | None,
    identity_author: str | None,
) -> None:
    """Reject argument combinations that cannot work, before anything slow happens."""
    if data and predictions:
        raise UserError("give either --data (generate, then score) or --predictions (score a file), not both")
    if data and not model:
        raise UserError(
            "--data needs --model to generate predictions (or pass --predictions to score a file)"
        )
    if adapter and not model:
        raise UserError("--adapter needs --model (the base model the adapter was trained on)")
    if identity_author and not identity_name:
        raise UserError("--author needs --name")
    if identity_name is not None and not identity_name.strip():
        raise UserError("--name must not be empty")
    if not (data or predictions or (model and (identity_name or adapter))):
        raise UserError(
            "nothing to evaluate: pass --predictions FILE, or --model with --data, --name or --adapter"
        )


def _load(model: str, adapter: str | None) -> tuple[Any, Any, Any]:
    """Load tokenizer, layout and model (with adapter), on the GPU in bf16 when there is one."""
    import torch

    from glmtune.layout import get_layout
    from glmtune.models import load_model, load_tokenizer_for

    tokenizer = load_tokenizer_for(model, adapter)
    layout = get_layout(tokenizer)
    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    loaded = load_model(model, adapter=adapter, dtype=dtype)
    if cuda:
        loaded.to("cuda")
    log.info(
        f"loaded {model}" + (f" + adapter {adapter}" if adapter else "") + f" ({'cuda' if cuda else 'cpu'}, "
        f"{str(dtype).removeprefix('torch.')}); layout {layout.name}"
    )
    return tokenizer, layout, loaded


def _generate_rows(
    loaded: tuple[Any, Any, Any], data: str, max_new_tokens: int, batch_size: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Answer the last assistant turn of every conversation in ``data``; return rows and timing."""
    from glmtune.data.read import read_any
    from glmtune.infer.generate import generate_replies

    tokenizer, layout, model = loaded
    read = read_any(data)
    for problem in read.problems[:10]:
        log.info(f"  skipped {problem}")
    if len(read.problems) > 10:
        log.info(f"  ... and {len(read.problems) - 10} more skipped")
    if not read.conversations:
        raise DataError(f"{data}: no usable conversation with an assistant reply to compare against")
    pairs = [conv.prompt_and_reference() for conv in read.conversations]
    started = time.perf_counter()
    with _progress(loaded, len(pairs), "eval: answering"):
        gens = generate_replies(
            model, tokenizer, layout, [p for p, _ in pairs], max_new_tokens=max_new_tokens, batch_size=batch_size
        )
    seconds = time.perf_counter() - started
    rows = [
        {
            "source": conv.source,
            "messages": prompt,
            "prediction": gen.text,
            "reference": ref,
            "finish_reason": gen.finish_reason,
            "stop_token": gen.stop_token,
            "loop": gen.loop,
            "num_tokens": gen.num_tokens,
            **({"reasoning": gen.reasoning} if layout.thinks else {}),
        }
        for conv, (prompt, ref), gen in zip(read.conversations, pairs, gens)
    ]
    timing = {
        "n": len(rows),
        "seconds": round(seconds, 3),
        "samples_per_s": len(rows) / seconds if seconds else 0.0,
        "skipped": len(read.problems),
    }
    return rows, timing


def evaluate(
    model: str | None = None,
    adapter: str | None = None,
    data: str | None = None,
    predictions: str | None = None,
    out: str | None = None,
    identity_name: str | None = None,
    identity_author: str | None = None,
    old_names: list[str] | tuple[str, ...] | None = None,
    probes: str | None = None,
    general: str | None = None,
    max_new_tokens: int = 256,
    batch_size: int = 16,
    min_repeats: int = DEFAULT_MIN_REPEATS,
    min_span: int = DEFAULT_MIN_SPAN,
    max_n: int = DEFAULT_MAX_N,
    old_authors: list[str] | tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Score predictions (read from ``predictions`` or generated on ``data``), identity and retention.

    Writes ``metrics.json`` (and generated predictions) under ``out`` when given, logs a table and returns
    the metrics dict.
    """
    _check_args(model, adapter, data, predictions, identity_name, identity_author)
    if max_new_tokens < 1 or batch_size < 1:
        raise UserError("--max-new-tokens and --batch-size must be at least 1")
    metrics_path, predictions_path = output_paths(out) if out else (None, None)
    metrics: dict[str, Any] = {"inputs": {
        "model": model, "adapter": adapter, "data": data, "predictions": predictions, "probes": probes,
        "general": general, "max_new_tokens": max_new_tokens, "batch_size": batch_size,
        "loop": {"min_repeats": min_repeats, "min_span": min_span, "max_n": max_n}}}
    rows = read_predictions(predictions) if predictions else None
    probe_set = load_probes(probes) if identity_name and model else None
    general_set = load_general(general) if adapter and model else None
    loaded = _load(model, adapter) if model else None
    if data and loaded:
        rows, metrics["generation"] = _generate_rows(loaded, data, max_new_tokens, batch_size)
        if predictions_path:
            _write_jsonl(predictions_path, rows)
            metrics["inputs"]["predictions"] = str(predictions_path)
            log.info(f"wrote {len(rows)} predictions to {predictions_path}")
    if rows is not None:
        metrics.update(score_predictions(rows, min_repeats=min_repeats, min_span=min_span, max_n=max_n))
    if identity_name and not loaded:
        log.info("identity: skipped (it needs --model to answer the probe questions)")
    if general and not (adapter and model):
        log.info("retention: skipped (it compares --model with and without --adapter)")
    if probe_set is not None and loaded:
        with _progress(loaded, len(probe_set), "eval: identity probes"):
            metrics["identity"] = _identity(loaded, probe_set, identity_name or "", identity_author, old_names,
                                            old_authors, max_new_tokens, batch_size)
    if general_set is not None and loaded:
        metrics["retention"] = _retention(loaded, general_set, max_new_tokens, batch_size)
    _write_metrics(metrics_path, metrics)
    return metrics


def _write_metrics(path: Path | None, metrics: dict[str, Any]) -> None:
    """Print the metrics table, then write ``metrics.json`` when there is a path."""
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print_metrics(metrics)
    if path:
        log.info(f"wrote {path}")


def _retention(loaded: tuple[Any, Any, Any], general_set: list[dict[str, Any]], max_new_tokens: int,
               batch_size: int) -> dict[str, Any]:
    """Answers of the model with and without its adapter to the general prompts, compared."""
    tokenizer, layout, peft_model = loaded
    with _progress(loaded, 2 * len(general_set), "eval: retention (base and tuned)"):
        base, tuned = base_and_tuned_answers(
            peft_model, tokenizer, layout, [r["messages"] for r in general_set], max_new_tokens, batch_size
        )
    return retention_scores(general_set, [g.text for g in base], [g.text for g in tuned])


def _progress(loaded: tuple[Any, Any, Any], total: int | None, desc: str) -> Any:
    """A progress bar counting the replies the loaded model generates inside the ``with`` block."""
    from glmtune.progress import generation_progress

    return generation_progress(loaded[2], total, desc)


def _identity(
    loaded: tuple[Any, Any, Any],
    probe_set: list[list[dict[str, Any]]],
    name: str,
    author: str | None,
    old_names: list[str] | tuple[str, ...] | None,
    old_authors: list[str] | tuple[str, ...] | None,
    max_new_tokens: int,
    batch_size: int,
) -> dict[str, Any]:
    """Answer the identity probes and score adoption of ``name`` and leakage of the old identity."""
    from glmtune.infer.generate import generate_replies

    tokenizer, layout, model = loaded
    gens = generate_replies(
        model, tokenizer, layout, probe_set, max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    scores = identity_scores(
        [g.text for g in gens],
        name,
        author,
        old_names=tuple(old_names) if old_names is not None else LEAK_NAMES,
        old_authors=tuple(old_authors) if old_authors is not None else LEAK_MAKERS,
    )
    for item in scores["offending"]:
        item["question"] = probe_set[item["index"]][-1]["content"]
    return {"name": name, "author": author, **scores}


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write rows as UTF-8 JSON lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
