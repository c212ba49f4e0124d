"""``glmtune eval``: score predictions (given, or generated from a model and data), identity and retention."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from glmtune.errors import DataError, UserError
from glmtune.eval.degeneration import (
    DEFAULT_MAX_N,
    DEFAULT_MIN_REPEATS,
    DEFAULT_MIN_SPAN,
    degeneration_metrics,
)
from glmtune.eval.identity import DEFAULT_OLD_AUTHORS, DEFAULT_OLD_NAMES, identity_scores, load_probes
from glmtune.eval.retention import base_and_tuned_answers, load_general, retention_scores
from glmtune.eval.text_metrics import text_metrics

END_TOKENS: tuple[str, ...] = ("<|user|>", "<|observation|>", "<|endoftext|>")
SHOW_OFFENDING = 5  # offending identity answers / retention regressions printed on the terminal

Say = Callable[[str], Any]


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """Read predictions JSONL rows: ``prediction`` required; reference, finish_reason, stop_token optional."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"predictions file not found: {file}")
    rows: list[dict[str, Any]] = []
    with file.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            where = f"{file}:{lineno}"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{where}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
            if lineno == 1:
                text = text.removeprefix("\ufeff")
            if text.strip():
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
    for field in ("reference", "finish_reason", "stop_token"):
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
    """Text metrics (rows with a reference), degeneration metrics and end-token shares of prediction rows."""
    preds = [r["prediction"] for r in rows]
    with_ref = [r for r in rows if isinstance(r.get("reference"), str)]
    result: dict[str, Any] = {
        "n": len(rows),
        "text": text_metrics([r["prediction"] for r in with_ref], [r["reference"] for r in with_ref])
        if with_ref
        else None,
    }
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


def output_paths(out: str | Path) -> tuple[Path, Path]:
    """``metrics.json`` path and the predictions path beside it (``<stem>.predictions.jsonl``).

    ``out`` ending in ``.json`` is the metrics file itself; anything else is a folder for ``metrics.json``.
    """
    out = Path(out)
    metrics = out if out.suffix.lower() == ".json" else out / "metrics.json"
    return metrics, metrics.with_name(f"{metrics.stem}.predictions.jsonl")


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


def _load(model: str, adapter: str | None, say: Say) -> tuple[Any, Any, Any]:
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
    say(
        f"loaded {model}" + (f" + adapter {adapter}" if adapter else "") + f" ({'cuda' if cuda else 'cpu'}, "
        f"{str(dtype).removeprefix('torch.')}); layout {layout.name}"
    )
    return tokenizer, layout, loaded


def _generate_rows(
    loaded: tuple[Any, Any, Any], data: str, max_new_tokens: int, batch_size: int, say: Say
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Answer the last assistant turn of every conversation in ``data``; return rows and timing."""
    from glmtune.data.read import read_any
    from glmtune.infer.generate import generate_replies

    tokenizer, layout, model = loaded
    read = read_any(data)
    for problem in read.problems[:10]:
        say(f"  skipped {problem}")
    if len(read.problems) > 10:
        say(f"  ... and {len(read.problems) - 10} more skipped")
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
    say: Say = print,
) -> dict[str, Any]:
    """Score predictions (read from ``predictions`` or generated on ``data``), identity and retention.

    Writes ``metrics.json`` (and generated predictions) under ``out`` when given, prints a table through
    ``say`` and returns the metrics dict.
    """
    _check_args(model, adapter, data, predictions, identity_name, identity_author)
    if max_new_tokens < 1 or batch_size < 1:
        raise UserError("--max-new-tokens and --batch-size must be at least 1")
    metrics_path, predictions_path = output_paths(out) if out else (None, None)
    metrics: dict[str, Any] = {
        "inputs": {
            "model": model,
            "adapter": adapter,
            "data": data,
            "predictions": predictions,
            "probes": probes,
            "general": general,
            "max_new_tokens": max_new_tokens,
            "batch_size": batch_size,
            "loop": {"min_repeats": min_repeats, "min_span": min_span, "max_n": max_n},
        }
    }
    rows = read_predictions(predictions) if predictions else None
    probe_set = load_probes(probes) if identity_name and model else None
    general_set = load_general(general) if adapter and model else None
    loaded = _load(model, adapter, say) if model else None

    if data and loaded:
        rows, metrics["generation"] = _generate_rows(loaded, data, max_new_tokens, batch_size, say)
        if predictions_path:
            _write_jsonl(predictions_path, rows)
            metrics["inputs"]["predictions"] = str(predictions_path)
            say(f"wrote {len(rows)} predictions to {predictions_path}")
    if rows is not None:
        metrics.update(score_predictions(rows, min_repeats=min_repeats, min_span=min_span, max_n=max_n))
    if identity_name and not loaded:
        say("identity: skipped (it needs --model to answer the probe questions)")
    if general and not (adapter and model):
        say("retention: skipped (it compares --model with and without --adapter)")
    if probe_set is not None and loaded:
        with _progress(loaded, len(probe_set), "eval: identity probes"):
            metrics["identity"] = _identity(
                loaded,
                probe_set,
                identity_name or "",
                identity_author,
                old_names,
                old_authors,
                max_new_tokens,
                batch_size,
            )
    if general_set is not None and loaded:
        tokenizer, layout, peft_model = loaded
        with _progress(loaded, 2 * len(general_set), "eval: retention (base and tuned)"):
            base, tuned = base_and_tuned_answers(
                peft_model, tokenizer, layout, [r["messages"] for r in general_set], max_new_tokens, batch_size
            )
        metrics["retention"] = retention_scores(general_set, [g.text for g in base], [g.text for g in tuned])
    if metrics_path:
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        metrics_path.write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print_metrics(metrics, say)
    if metrics_path:
        say(f"wrote {metrics_path}")
    return metrics


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
        old_names=tuple(old_names) if old_names is not None else DEFAULT_OLD_NAMES,
        old_authors=tuple(old_authors) if old_authors is not None else DEFAULT_OLD_AUTHORS,
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


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(section, metric, formatted value) rows of a metrics dict, for the terminal and the run report."""
    out: list[tuple[str, str, str]] = []
    text = metrics.get("text")
    if text:
        for key in ("rouge-1", "rouge-2", "rouge-l"):
            out.append(("text", key, _num(text[key])))
        out.append(("text", "bleu-4", _num(text["bleu-4"], 4)))
        out.append(("text", "pairs (empty / error)", f"{text['n']} ({text['n_empty']} / {text['n_error']})"))
    deg = metrics.get("degeneration")
    if deg:
        out.append(("degeneration", "loop rate", _pct(deg["loop_rate"])))
        out.append(
            (
                "degeneration",
                "distinct-1 / distinct-2",
                f"{_num(deg['distinct-1'], 3)} / {_num(deg['distinct-2'], 3)}",
            )
        )
        length = f"{_num(deg['pred_len_mean'], 1)} units"
        if "ref_len_mean" in deg:
            length += f" (reference {_num(deg['ref_len_mean'], 1)}, ratio {_num(deg['len_ratio'])})"
        out.append(("degeneration", "reply length", length))
        for reason, share in (deg.get("finish_reason") or {}).items():
            out.append(("degeneration", f"finish: {reason}", _pct(share)))
    for token, share in (metrics.get("end_tokens") or {}).items():
        out.append(("end tokens", token, _pct(share)))
    gen = metrics.get("generation")
    if gen:
        out.append(
            ("generation", "samples/s", f"{gen['samples_per_s']:.2f} ({gen['n']} in {gen['seconds']:.1f} s)")
        )
    ident = metrics.get("identity")
    if ident:
        out.append(("identity", f"adoption of {ident['name']!r}", _pct(ident["adoption"])))
        if "author_adoption" in ident:
            out.append(("identity", f"adoption of {ident['author']!r}", _pct(ident["author_adoption"])))
        out.append(("identity", "old identity leakage", _pct(ident["leakage"])))
        out.append(("identity", "probes (offending)", f"{ident['n']} ({len(ident['offending'])})"))
    ret = metrics.get("retention")
    if ret:
        out.append(("retention", "ROUGE-L tuned vs base", _num(ret["rouge-l_tuned_vs_base"])))
        out.append(("retention", "identical answers", _pct(ret["identical"])))
        if "accuracy_base" in ret:
            out.append(
                (
                    "retention",
                    f"key accuracy ({ret['n_checkable']} checkable)",
                    f"{_pct(ret['accuracy_base'])} -> {_pct(ret['accuracy_tuned'])} "
                    f"({100 * ret['accuracy_change']:+.1f} pts)",
                )
            )
            out.append(
                (
                    "retention",
                    "regressions / improvements",
                    f"{len(ret['regressions'])} / {ret['improvements']}",
                )
            )
    return out


def print_metrics(metrics: dict[str, Any], say: Say = print) -> None:
    """Render the metrics as a rich table through ``say``, then the first offending answers/regressions."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="glmtune eval")
    for column in ("section", "metric", "value"):
        table.add_column(column, overflow="fold")
    previous = None
    for section, name, value in metric_rows(metrics):
        table.add_row(section if section != previous else "", name, value)
        previous = section
    buf = io.StringIO()
    Console(file=buf, width=110, highlight=False, color_system=None).print(table)
    say(buf.getvalue().rstrip())
    for item in (metrics.get("identity") or {}).get("offending", [])[:SHOW_OFFENDING]:
        say(f"  identity #{item['index']} {item['question']!r} -> {_clip(item['answer'])!r}: {item['why']}")
    for item in (metrics.get("retention") or {}).get("regressions", [])[:SHOW_OFFENDING]:
        say(
            f"  regression #{item['index']} {item['question']!r} (key {item['key']!r}): "
            f"base {_clip(item['base'])!r} -> tuned {_clip(item['tuned'])!r}"
        )


def _clip(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
