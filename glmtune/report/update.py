"""``glmtune eval --out RUN/eval``: add the eval results to the run's ``report.html`` and model card."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def run_folder(metrics_path: Path) -> Path | None:
    """The glmtune run folder ``metrics.json`` was written into (``RUN/eval/`` or ``RUN/``), if any."""
    for folder in (metrics_path.parent, metrics_path.parent.parent):
        if (folder / "log.jsonl").is_file() and (folder / "plan.json").is_file():
            return folder
    return None


def update_run(metrics_path: Path, metrics: dict[str, Any], model: str | None) -> Path | None:
    """Add the eval results to the run's ``report.html`` and model card when ``metrics_path`` is inside a run."""
    from glmtune.report import examples_from_predictions, write_report
    from glmtune.report.card import write_run_card

    run = run_folder(metrics_path)
    if run is None:
        return None
    predictions = metrics_path.with_name(f"{metrics_path.stem}.predictions.jsonl")
    examples = examples_from_predictions(predictions) if predictions.is_file() else None
    report = write_report(run, eval_metrics=metrics, examples=examples)
    base, method = _run_base(run, model)
    if base and (run / "README.md").is_file():
        write_run_card(run, base, method)
    log.info(f"updated the run report {report}" + (" and model card README.md" if base else ""))
    return report


def _run_base(run: Path, model: str | None) -> tuple[str | None, str]:
    """The run's base model (from its ``config.yaml``, else ``model``) and tuning method."""
    import yaml

    config = run / "config.yaml"
    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8")) if config.is_file() else {}
    except (OSError, yaml.YAMLError):
        data = {}
    data = data if isinstance(data, dict) else {}
    base = (data.get("model") or {}).get("name_or_path") or model
    return base, str((data.get("peft") or {}).get("method") or "lora")
