"""Evaluate page: ``evaluate`` on a data file or the identity probes, results added to the run's report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glmtune.errors import UserError
from glmtune.ui.runs import base_model_of
from glmtune.ui.workspace import command

EXAMPLES = 12
CELL = 300


@dataclass
class EvalView:
    """What the Evaluate page shows."""

    metrics: list[list[str]] = field(default_factory=list)  # section, metric, value
    example_headers: list[str] = field(default_factory=list)
    examples: list[list[str]] = field(default_factory=list)
    metrics_path: Path | None = None
    report: Path | None = None  # the run's report.html, updated with these results
    command: str = ""


def eval_out(adapter: Path) -> Path:
    """Where the results go: ``RUN/eval`` for a run (its report shows them), ``CHECKPOINT/eval`` for a checkpoint."""
    return adapter / "eval"


def _cut(value: Any) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= CELL else text[: CELL - 1] + "…"


def run_eval(adapter: str | None, use_data: bool, data: str | None, name: str | None, author: str | None,
             max_new_tokens: int = 64, batch_size: int = 16, probes: str | None = None,
             model: str | None = None) -> EvalView:
    """Evaluate a run or checkpoint the way ``glmtune eval --out ADAPTER/eval`` does, then update its report."""
    from glmtune.eval.metrics_table import metric_rows
    from glmtune.eval.run import evaluate
    from glmtune.report.update import update_run

    if not (adapter or "").strip():
        raise UserError("choose a finished run or a checkpoint to evaluate (train one on the Train page)")
    folder = Path(adapter.strip())
    base = base_model_of(folder) or (model or "").strip()
    if not base:
        raise UserError(f"{folder}: cannot tell its base model (no config.yaml); choose the model on the Model page")
    name, author = (name or "").strip() or None, (author or "").strip() or None
    data = (data or "").strip() or None if use_data else None
    probes = (probes or "").strip() or None
    if use_data and not data:
        raise UserError("give the data file to answer (or evaluate on the identity probes)")
    if not use_data and not name:
        raise UserError("the identity probes need the assistant's new name (set it on the Data page or here)")
    out = eval_out(folder)
    metrics = evaluate(model=base, adapter=str(folder), data=data, out=str(out), identity_name=name,
                       identity_author=author, probes=probes if not use_data else None,
                       max_new_tokens=int(max_new_tokens), batch_size=int(batch_size))
    metrics_path = out / "metrics.json"
    report = update_run(metrics_path, metrics, base)
    view = EvalView(metrics=[list(row) for row in metric_rows(metrics)], metrics_path=metrics_path, report=report)
    view.command = command("eval", "--model", base, "--adapter", folder, *(["--data", data] if data else []),
                           *(["--name", name] if name else []), *(["--author", author] if author else []),
                           *(["--probes", probes] if probes and not use_data else []),
                           "--max-new-tokens", str(int(max_new_tokens)), "--batch-size", str(int(batch_size)),
                           "--out", out)
    view.example_headers, view.examples = examples(metrics, out)
    return view


def examples(metrics: dict[str, Any], out: Path) -> tuple[list[str], list[list[str]]]:
    """Example answers: the first predictions on the data, else the probe answers that miss the new identity
    and the retention regressions."""
    from glmtune.report.html import examples_from_predictions

    predictions = out / "metrics.predictions.jsonl"
    if metrics.get("inputs", {}).get("data") and predictions.is_file():
        rows = examples_from_predictions(predictions, n=EXAMPLES)
        return ["prompt", "answer", "reference", "finish"], [
            [_cut(r.get("prompt")), _cut(r.get("prediction")), _cut(r.get("reference")), _cut(r.get("finish_reason"))]
            for r in rows]
    found: list[list[str]] = []
    for item in (metrics.get("identity") or {}).get("offending", [])[:EXAMPLES]:
        found.append(["identity", _cut(item.get("question")), _cut(item.get("answer")), _cut(item.get("why"))])
    for item in (metrics.get("retention") or {}).get("regressions", [])[:EXAMPLES]:
        found.append(["retention", _cut(item.get("question")), _cut(item.get("tuned")),
                      _cut(f"base answered {item.get('base')!r}; key {item.get('key')!r}")])
    return ["check", "question", "answer", "why"], found
