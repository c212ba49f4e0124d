"""The run report: one self-contained HTML page with plan, curves, events, eval metrics and examples."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from glmtune.errors import UserError
from glmtune.report import events, examples_from_predictions, read_log, series, write_report

PLAN = {
    "model_params": 1_057_152,
    "data": {"samples": 40, "trained_tokens": 900, "total_tokens": 2400, "max_len": 80},
    "plan": [
        {
            "key": "learning_rate",
            "value": 0.0005,
            "reason": "tiny model <script>alert(1)</script>",
            "source": "auto",
        },
        {"key": "lora.r", "value": 8, "reason": "set in the config", "source": "config"},
        {"key": "per_device_train_batch_size", "value": 4, "reason": "fits in memory", "source": "auto"},
    ],
}
RESOURCE = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def _fake_run(run: Path, eval_loss: bool = True, event: bool = True) -> Path:
    run.mkdir(parents=True)
    rows = []
    for step in range(1, 31):
        rows.append(
            {
                "step": step,
                "epoch": step / 30,
                "loss": 3.0 / step**0.3,
                "grad_norm": 1.0 + (step == 12) * 9,
                "learning_rate": 5e-4 * (1 - step / 31),
            }
        )
        if eval_loss and step % 10 == 0:
            rows.append({"step": step, "eval_loss": 2.5 - step / 30})
        if event and step == 12:
            rows.append(
                {
                    "step": 12,
                    "event": "grad_spike",
                    "action": "skipped_update",
                    "loss": 1.4,
                    "grad_norm": 10.0,
                    "ratio": 6.5,
                    "lr_scale": None,
                }
            )
    rows.append(
        {
            "step": 30,
            "event": "end",
            "best_step": 30 if eval_loss else None,
            "best_eval_loss": None,
            "stopped_early": False,
        }
    )
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "plan.json").write_text(json.dumps(PLAN))
    summary = {
        "steps": 30,
        "first_loss": 3.0,
        "final_loss": 1.08,
        "best_step": 30 if eval_loss else None,
        "best_eval_loss": 1.5 if eval_loss else None,
        "stopped_early": False,
        "guard": "stability guard: grad_spike x1" if event else "stability guard: no events",
        "guard_events": [],
        "precision": "fp32 on cpu",
        "seconds": 12.3,
    }
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "config.yaml").write_text("model:\n  name_or_path: tiny\n")
    return run


def test_report_is_one_self_contained_file(tmp_path: Path):
    run = _fake_run(tmp_path / "run")
    metrics = {
        "text": {
            "rouge-1": 12.5,
            "rouge-2": 3.0,
            "rouge-l": 10.0,
            "bleu-4": 0.02,
            "n": 2,
            "n_empty": 0,
            "n_error": 0,
        }
    }
    examples = [
        {
            "messages": [{"role": "user", "content": "法国的首都是哪里？"}],
            "prediction": "巴黎 <b>bold</b>",
            "reference": "法国的首都是巴黎。",
        }
    ]
    path = write_report(run, eval_metrics=metrics, examples=examples)
    assert path == run / "report.html"
    html = path.read_text(encoding="utf-8")
    for item in PLAN["plan"]:
        assert item["key"] in html
    assert html.count("data:image/png;base64,") == 3
    assert sorted(p.name for p in (run / "plots").glob("*.png")) == [
        "grad_norm.png",
        "learning_rate.png",
        "loss.png",
    ]
    assert not RESOURCE.search(html) and "<script" not in html and "<link" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "grad_spike" in html and "skipped_update" in html and "stability guard: grad_spike x1" in html
    assert "rouge-1" in html and "12.50" in html and "法国的首都是哪里？" in html
    assert "name_or_path: tiny" in html


def test_report_without_eval_loss_events_or_plan(tmp_path: Path):
    run = _fake_run(tmp_path / "run", eval_loss=False, event=False)
    (run / "plan.json").unlink()
    html = write_report(run).read_text(encoding="utf-8")
    assert "No stability events" in html and "No eval loss" in html and "No plan.json" in html
    assert html.count("data:image/png;base64,") == 3


def test_report_on_an_empty_or_broken_run_folder(tmp_path: Path):
    run = tmp_path / "empty"
    run.mkdir()
    html = write_report(run).read_text(encoding="utf-8")
    assert "No training curves" in html and "No summary.json" in html
    (run / "log.jsonl").write_text('{"step": 1, "loss": 2.0}\n{broken\n[1]\n{"step": 2, "loss": NaN}\n')
    (run / "summary.json").write_text("{")
    html = write_report(run).read_text(encoding="utf-8")
    assert "log.jsonl:2: not valid JSON" in html and "could not read summary.json" in html
    assert html.count("data:image/png;base64,") == 1
    with pytest.raises(UserError, match="not found"):
        write_report(tmp_path / "missing")


def test_log_helpers_split_curves_from_events(tmp_path: Path):
    run = _fake_run(tmp_path / "run")
    rows, notes = read_log(run / "log.jsonl")
    assert notes == []
    steps, losses = series(rows, "loss")
    assert steps == list(range(1, 31)) and len(losses) == 30  # the event row's loss is not a curve point
    assert series(rows, "eval_loss")[0] == [10, 20, 30]
    assert [e["event"] for e in events(rows)] == ["grad_spike"]


def test_examples_from_predictions(tmp_path: Path):
    path = tmp_path / "p.jsonl"
    row = {
        "messages": [{"role": "user", "content": "hi"}],
        "prediction": "hello",
        "reference": "hey",
        "finish_reason": "stop",
        "num_tokens": 3,
    }
    path.write_text(json.dumps(row) + "\n")
    assert examples_from_predictions(path) == [
        {"prompt": "hi", "prediction": "hello", "reference": "hey", "finish_reason": "stop"}
    ]


def test_report_renders_in_headless_chromium(tmp_path: Path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from matplotlib.image import imread

    run = _fake_run(tmp_path / "run")
    report = write_report(run, examples=[{"prompt": "你好", "prediction": "你好！"}])
    shot = tmp_path / "shot.png"
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1200,2000",
        report.resolve().as_uri(),
    ]
    subprocess.run(cmd, capture_output=True, timeout=90, check=False)
    assert shot.is_file() and shot.stat().st_size > 20_000
    pixels = imread(shot)
    assert pixels.shape[:2] == (2000, 1200) and pixels.std() > 0.05  # not a blank page


def test_curves_use_every_step_and_events_count_each_spike_once(tmp_path: Path):
    from glmtune.report import curve_rows

    run = _fake_run(tmp_path / "run")
    rows, _ = read_log(run / "log.jsonl")
    logged = [r for r in rows if "event" in r or "eval_loss" in r or r["step"] % 10 == 0]  # logging_steps 10
    logged.append(dict(next(r for r in rows if r.get("event") == "grad_spike")))  # a replayed spike, logged again
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in logged))
    per_step = [{"step": s, "loss": 3.0 / s, "grad_norm": 1.0, "learning_rate": 1e-4} for s in range(1, 31)]
    (run / "steps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in per_step))
    drawn = curve_rows(logged, per_step)
    assert series(drawn, "loss")[0] == list(range(1, 31))  # 30 points, not the 3 logged ones
    assert series(drawn, "eval_loss")[0] == [10, 20, 30]
    assert series(curve_rows(logged, []), "loss")[0] == [10, 20, 30]  # older runs: the logged steps
    assert [(e["step"], e["event"]) for e in events(logged)] == [(12, "grad_spike")]
    html = write_report(run).read_text(encoding="utf-8")
    assert "every optimiser step (steps.jsonl)" in html
    assert html.count("skipped_update") == 1


def test_data_section_lists_sources_weights_truncation_and_reject_files(tmp_path: Path):
    run = _fake_run(tmp_path / "run")
    rejects = [{"source": "/d/a.jsonl:3", "code": "malformed_json", "reason": "x"},
               {"source": "/d/a.jsonl:9", "code": "duplicate", "reason": "y"},
               {"source": "/d/b.jsonl:1:2", "code": "no_reply", "reason": "z"}]
    (run / "rejected.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rejects))
    from glmtune.report.data import data_facts, write_data_facts

    train = type("Enc", (), {"rows": [{"source": "/d/a.jsonl:1"}, {"source": "/d/a.jsonl:2"},
                                      {"source": "/d/b.jsonl:4"}], "records": 6, "rejected": 2,
                             "result": type("R", (), {"truncated": 1, "trained_tokens_removed": 17})()})()
    sources = [type("S", (), {"path": p, "format": "auto", "weight": w})() for p, w in
               (("/d/a.jsonl", 1.0), ("/d/b.jsonl", 0.1))]
    facts = data_facts(sources, train, None, {"training": 3, "validation": 0}, {"max_length": 96,
                       "truncation": "keep_recent"}, run)
    assert [(s["samples"], s["rejects"]) for s in facts["sources"]] == [(2, 2), (1, 1)]
    assert facts["files"]["rejected.jsonl"]["codes"] == {"malformed_json": 1, "duplicate": 1, "no_reply": 1}
    write_data_facts(run, facts)
    html = write_report(run).read_text(encoding="utf-8")
    section = html[html.index("<h2>Data</h2>"):html.index("<h2>Evaluation</h2>")]
    assert "/d/b.jsonl" in section and "0.1" in section and "keep_recent" in section
    assert str(run / "rejected.jsonl") in section and "malformed_json 1" in section
    assert "trained tokens removed by truncation</td><td class=\"num\">17" in section


def test_eval_results_in_the_run_folder_reach_the_report(tmp_path: Path):
    run = _fake_run(tmp_path / "run")
    html = write_report(run).read_text(encoding="utf-8")
    assert "No evaluation yet" in html
    (run / "eval").mkdir()
    metrics = {"degeneration": {"loop_rate": 0.45, "distinct-1": 0.5, "distinct-2": 0.6, "pred_len_mean": 9.0,
                                "finish_reason": {"stop": 0.55, "length": 0.45}}}
    (run / "eval" / "metrics.json").write_text(json.dumps(metrics))
    (run / "eval" / "metrics.predictions.jsonl").write_text(json.dumps(
        {"messages": [{"role": "user", "content": "谁是你？"}], "prediction": "我是Nova", "finish_reason": "stop"}) + "\n")
    html = write_report(run).read_text(encoding="utf-8")
    section = html[html.index("<h2>Evaluation</h2>"):]
    assert "loop rate" in section and "45.0%" in section and "谁是你？" in section and "我是Nova" in section
