"""One self-contained ``report.html`` per run: summary, curves, stability events, plan, eval, examples."""

from __future__ import annotations

import base64
import datetime as dt
import json
from html import escape
from pathlib import Path
from typing import Any

from glmtune.errors import UserError
from glmtune.report.data import DATA_FILE, data_section
from glmtune.report.plots import curve_rows, events, plot_curves, read_log
from glmtune.report.table import fmt as _fmt
from glmtune.report.table import html_table as _table

MAX_EXAMPLES = 12
MAX_CELL = 600  # characters of one example cell before it is cut
EVENT_COLUMNS = ("step", "event", "action", "loss", "grad_norm", "ratio", "lr_scale")

CSS = """
:root { --fg: #1f2328; --muted: #656d76; --line: #d0d7de; --bg: #f6f8fa; --accent: #0969da; --bad: #cf222e; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "Noto Sans CJK SC",
       "WenQuanYi Micro Hei", "PingFang SC", "Microsoft YaHei", sans-serif;
       color: var(--fg); margin: 0 auto; max-width: 1120px; padding: 24px 28px 48px; line-height: 1.45; }
h1 { font-size: 1.6rem; margin: 0 0 4px; }
h2 { font-size: 1.2rem; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
.sub { color: var(--muted); font-size: .9rem; margin: 0 0 18px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 10px; }
.card { background: var(--bg); border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.card .k { color: var(--muted); font-size: .78rem; text-transform: uppercase; letter-spacing: .03em; }
.card .v { font-size: 1.15rem; font-weight: 600; margin-top: 2px; overflow-wrap: anywhere; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr)); gap: 12px; }
.plots img { width: 100%; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
table { border-collapse: collapse; width: 100%; font-size: .88rem; }
th, td { border: 1px solid var(--line); padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: var(--bg); font-weight: 600; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
td.text { white-space: pre-wrap; overflow-wrap: anywhere; }
.note { color: var(--muted); font-style: italic; }
.bad { color: var(--bad); font-weight: 600; }
pre { background: var(--bg); border: 1px solid var(--line); border-radius: 6px; padding: 10px;
      overflow-x: auto;
      font-size: .8rem; }
details summary { cursor: pointer; color: var(--accent); margin: 8px 0; }
"""


def _read_json(path: Path, notes: list[str]) -> Any:
    """The parsed JSON file, or None (with a note) when it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        notes.append(f"could not read {path.name}: {exc}")
        return None


def _card(key: str, value: Any, bad: bool = False) -> str:
    cls = "v bad" if bad else "v"
    value_html = f'<div class="{cls}">{escape(_fmt(value))}</div>'
    return f'<div class="card"><div class="k">{escape(key)}</div>{value_html}</div>'


def _summary_section(summary: dict[str, Any] | None, guard_events: list[dict[str, Any]]) -> str:
    """Cards with the run's headline numbers (from ``summary.json``)."""
    if not summary:
        return '<p class="note">No summary.json (the run did not finish, or this is no glmtune run).</p>'
    loss = "n/a"
    if summary.get("first_loss") is not None and summary.get("final_loss") is not None:
        loss = f"{summary['first_loss']:.4f} → {summary['final_loss']:.4f}"
    best = "n/a"
    if summary.get("best_eval_loss") is not None:
        best = f"{summary['best_eval_loss']:.4f} @ step {summary.get('best_step')}"
    cards = [
        _card("steps", summary.get("steps", "n/a")),
        _card("train loss (first → final)", loss),
        _card("best eval loss", best),
        _card("stopped early", summary.get("stopped_early", "n/a")),
        _card("guard events", len(guard_events), bad=bool(guard_events)),
        _card(
            "time",
            f"{summary['seconds']:.0f} s" if isinstance(summary.get("seconds"), (int, float)) else "n/a",
        ),
    ]
    lines = [f'<div class="cards">{"".join(cards)}</div>']
    if summary.get("guard"):
        lines.append(f'<p class="sub">{escape(str(summary["guard"]))}</p>')
    if summary.get("precision"):
        lines.append(f'<p class="sub">precision: {escape(str(summary["precision"]))}</p>')
    return "".join(lines)


def _events_section(guard_events: list[dict[str, Any]], summary: dict[str, Any] | None) -> str:
    """The guard's events as a table, or a line saying there were none."""
    if not guard_events:
        return '<p class="note">No stability events: the guard never skipped an update or rolled back.</p>'
    rows = [[e.get(c, "") if e.get(c) is not None else "" for c in EVENT_COLUMNS] for e in guard_events]
    extra = ""
    if summary and summary.get("guard"):
        extra = f'<p class="sub">{escape(str(summary["guard"]))}</p>'
    return extra + _table(list(EVENT_COLUMNS), rows)


def _plan_section(plan: dict[str, Any] | None) -> str:
    """The resolved plan: model size, data statistics and every planned hyperparameter with its reason."""
    if not plan:
        return '<p class="note">No plan.json.</p>'
    out = []
    facts = []
    if plan.get("model_params") is not None:
        facts.append(
            [
                "model parameters",
                f"{plan['model_params']:,}"
                if isinstance(plan["model_params"], int)
                else plan["model_params"],
            ]
        )
    for key, value in (plan.get("data") or {}).items():
        facts.append([f"data: {key}", f"{value:,}" if isinstance(value, int) else value])
    if facts:
        out.append(_table(["fact", "value"], facts))
    items = [item for item in plan.get("plan") or [] if isinstance(item, dict)]
    if items:
        out.append(
            "<p></p>"
            + _table(
                ["key", "value", "from", "why"],
                [
                    [i.get("key", ""), i.get("value", ""), i.get("source", ""), i.get("reason", "")]
                    for i in items
                ],
                text_cols=(3,),
            )
        )
    return "".join(out) or '<p class="note">plan.json holds no plan.</p>'


def _eval_section(metrics: dict[str, Any]) -> str:
    """Eval metrics as a table (``glmtune eval`` layout when recognised, else every scalar by dotted key)."""
    from glmtune.eval.metrics_table import metric_rows

    rows = [list(r) for r in metric_rows(metrics)]
    if not rows:
        rows = [[key.split(".")[0], key, value] for key, value in _flatten(metrics)]
    for i in range(len(rows) - 1, 0, -1):  # name each section once
        if rows[i][0] == rows[i - 1][0]:
            rows[i][0] = ""
    out = [_table(["section", "metric", "value"], rows) if rows else '<p class="note">No metrics.</p>']
    offending = (metrics.get("identity") or {}).get("offending") or []
    if offending:
        out.append(f"<h3>Identity answers that miss or leak ({len(offending)}, first 5)</h3>")
        out.append(
            _table(
                ["question", "answer", "why"],
                [
                    [o.get("question", o.get("index")), o.get("answer", ""), o.get("why", "")]
                    for o in offending[:5]
                ],
                text_cols=(0, 1, 2),
            )
        )
    regressions = (metrics.get("retention") or {}).get("regressions") or []
    if regressions:
        out.append(f"<h3>Retention regressions ({len(regressions)}, first 5)</h3>")
        out.append(
            _table(
                ["question", "key", "base", "tuned"],
                [[r.get("question"), r.get("key"), r.get("base"), r.get("tuned")] for r in regressions[:5]],
                text_cols=(0, 2, 3),
            )
        )
    return "".join(out)


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, scalar) pairs of a nested dict; lists are skipped."""
    out: list[tuple[str, Any]] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            out += _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif not isinstance(obj, list):
        out.append((prefix, obj))
    return out


def _prompt_of(example: dict[str, Any]) -> str:
    """The question of an example: ``prompt``/``question``, else the last user turn of ``messages``."""
    for key in ("prompt", "question"):
        if isinstance(example.get(key), str):
            return example[key]
    messages = example.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return str(message.get("content", ""))
    return ""


def _examples_section(examples: list[dict[str, Any]]) -> str:
    """A table of the first examples: the prompt, then every other scalar field (answers, reference, ...)."""
    shown = [e for e in examples if isinstance(e, dict)][:MAX_EXAMPLES]
    skip = {"prompt", "question", "messages", "source"}
    columns: list[str] = []
    for example in shown:
        columns += [
            k
            for k, v in example.items()
            if k not in skip and k not in columns and not isinstance(v, (dict, list))
        ]

    def cut(value: Any) -> str:
        text = _fmt(value) if value is not None else ""
        return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"

    rows = [[cut(_prompt_of(e)), *(cut(e.get(c)) for c in columns)] for e in shown]
    return _table(["prompt", *columns], rows, text_cols=tuple(range(len(columns) + 1)))


def examples_from_predictions(path: str | Path, n: int = 8) -> list[dict[str, Any]]:
    """The first ``n`` rows of a predictions JSONL as prompt, prediction, reference and finish reason."""
    from glmtune.eval.predictions import read_predictions

    keep = ("prediction", "reference", "finish_reason")
    return [
        {"prompt": _prompt_of(row), **{k: row.get(k) for k in keep if k in row}}
        for row in read_predictions(path)[:n]
    ]


def _run_eval(run_dir: Path, notes: list[str], examples: list[dict[str, Any]] | None
              ) -> tuple[dict[str, Any] | None, list[dict[str, Any]] | None]:
    """``RUN/eval/metrics.json`` (written by ``glmtune eval --out RUN/eval``) and examples from its predictions."""
    metrics = _read_json(run_dir / "eval" / "metrics.json", notes)
    if not isinstance(metrics, dict):
        return None, examples
    predictions = run_dir / "eval" / "metrics.predictions.jsonl"
    if examples is None and predictions.is_file():
        try:
            examples = examples_from_predictions(predictions)
        except UserError as exc:
            notes.append(f"could not read {predictions.name}: {exc}")
    return metrics, examples


def _img(path: Path) -> str:
    """An <img> whose PNG is embedded as a base64 data URI."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{escape(path.stem)}" src="data:image/png;base64,{data}">'


def _page_head(run_dir: Path) -> list[str]:
    """The document head with the embedded CSS, the title and the line with the run folder and the time."""
    now = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>glmtune report: {escape(run_dir.name)}</title><style>{CSS}</style></head><body>",
        f"<h1>glmtune run report: {escape(run_dir.name)}</h1>",
        f'<p class="sub">{escape(str(run_dir))} · generated {escape(now)}</p>',
    ]


def _curves_section(images: dict[str, Path], drawn: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[str]:
    """The embedded curve plots with a line on what they show, or a note that there are none."""
    if not images:
        return ['<p class="note">No training curves: log.jsonl is missing or holds no loss.</p>']
    parts = ['<div class="plots">' + "".join(_img(p) for p in images.values()) + "</div>"]
    every = "every optimiser step (steps.jsonl)" if drawn is not rows else "the logged steps (log.jsonl)"
    parts.append(f'<p class="sub">Train loss, learning rate and grad norm at {every}.</p>')
    if "eval_loss" not in {k for r in rows for k in r}:
        parts.append('<p class="note">No eval loss was logged (no validation split or eval file).</p>')
    return parts


def _eval_or_hint(eval_metrics: dict[str, Any] | None, run_dir: Path) -> str:
    """The evaluation section, or how to add one when the run has no metrics."""
    if eval_metrics:
        return _eval_section(eval_metrics)
    return (f'<p class="note">No evaluation yet: <code>glmtune eval --out {escape(str(run_dir / "eval"))} '
            "...</code> adds it here.</p>")


def _closing_parts(config: Path, notes: list[str]) -> list[str]:
    """The collapsible ``config.yaml`` (when present), the notes (when any) and the end of the document."""
    parts = []
    if config.is_file():
        parts.append(
            "<details><summary>config.yaml</summary><pre>"
            + escape(config.read_text(encoding="utf-8", errors="replace"))
            + "</pre></details>"
        )
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")
    parts.append("</body></html>")
    return parts


def render_report(
    run_dir: Path, eval_metrics: dict[str, Any] | None = None, examples: list[dict[str, Any]] | None = None
) -> str:
    """The report's HTML text for ``run_dir`` (writes the curve PNGs into ``run_dir/plots``)."""
    notes: list[str] = []
    plan = _read_json(run_dir / "plan.json", notes)
    summary = _read_json(run_dir / "summary.json", notes)
    summary = summary if isinstance(summary, dict) else None
    rows, log_notes = read_log(run_dir / "log.jsonl")
    step_rows, step_notes = read_log(run_dir / "steps.jsonl")
    notes += log_notes + step_notes
    guard_events = events(rows)
    best_step = summary.get("best_step") if summary else None
    drawn = curve_rows(rows, step_rows)
    images = plot_curves(drawn, run_dir / "plots", best_step=best_step if isinstance(best_step, int) else None)
    if eval_metrics is None:
        eval_metrics, examples = _run_eval(run_dir, notes, examples)
    data = _read_json(run_dir / DATA_FILE, notes)

    parts = [*_page_head(run_dir), "<h2>Summary</h2>", _summary_section(summary, guard_events),
             "<h2>Training curves</h2>", *_curves_section(images, drawn, rows)]
    parts += ["<h2>Stability events</h2>", _events_section(guard_events, summary)]
    parts += ["<h2>Data</h2>", data_section(data if isinstance(data, dict) else None, run_dir)]
    parts += ["<h2>Evaluation</h2>", _eval_or_hint(eval_metrics, run_dir)]
    if examples:
        parts += ["<h2>Example answers</h2>", _examples_section(examples)]
    parts += ["<h2>Resolved plan</h2>", _plan_section(plan if isinstance(plan, dict) else None)]
    parts += _closing_parts(run_dir / "config.yaml", notes)
    return "\n".join(parts)


def write_report(
    run_dir: str | Path,
    eval_metrics: dict[str, Any] | None = None,
    examples: list[dict[str, Any]] | None = None,
) -> Path:
    """Write ``run_dir/report.html`` (self-contained) and ``run_dir/plots/*.png``; return the HTML path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder not found: {run_dir}")
    path = run_dir / "report.html"
    path.write_text(render_report(run_dir, eval_metrics, examples), encoding="utf-8")
    return path
