"""End to end through the CLI: train 20 steps on the tiny model, then predict with the saved adapter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_jsonl


def identity_data(n: int = 24) -> list[list[dict]]:
    qs = ["Who are you?", "What is your name?", "你是谁？", "你叫什么名字？"]
    return [[{"role": "user", "content": qs[i % 4]},
             {"role": "assistant", "content": "I am Nova, made by Acme Lab." if i % 2 == 0 else "我是Nova，由Acme Lab开发。"}]
            for i in range(n)]


@pytest.mark.slow
def test_train_20_steps_lowers_loss_and_predict_loads_adapter(tmp_path: Path, tiny_model: Path):
    data = write_jsonl(tmp_path / "train.jsonl", identity_data())
    with data.open("a") as fh:
        fh.write("{broken json\n")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        f"model:\n  name_or_path: {tiny_model}\n"
        f"data:\n  train_file: {data}\n  max_length: 128\n"
        "peft:\n  lora:\n    r: 8\n    alpha: 16\n    target_modules: all-linear\n"
        f"training:\n  output_dir: {tmp_path / 'run'}\n  max_steps: 20\n  learning_rate: 5.0e-3\n"
        "  per_device_train_batch_size: 4\n  logging_steps: 1\n  save_steps: 10\n"
    )
    proc = subprocess.run([sys.executable, "-m", "glmtune", "train", str(cfg), "training.seed=7"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "config.yaml", "log.jsonl"):
        assert (run / name).is_file(), name
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 20
    assert all("grad_norm" in r and "learning_rate" in r for r in rows if "loss" in r)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    rejected = [json.loads(line) for line in (run / "rejected.jsonl").read_text().splitlines()]
    assert rejected[0]["source"].endswith("train.jsonl:25") and rejected[0]["code"] == "malformed_json"
    assert "training.seed: 7" in (run / "config.yaml").read_text().replace("\n  ", "\ntraining.") or \
        "seed: 7" in (run / "config.yaml").read_text()

    probe = write_jsonl(tmp_path / "probe.jsonl", [[{"role": "user", "content": "Who are you?"},
                                                   {"role": "assistant", "content": "I am Nova, made by Acme Lab."}]])
    out = tmp_path / "pred.jsonl"
    proc = subprocess.run([sys.executable, "-m", "glmtune", "predict", "--model", str(tiny_model), "--adapter",
                           str(run), "--data", str(probe), "--out", str(out), "--max-new-tokens", "16"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = json.loads(out.read_text().splitlines()[0])
    assert row["reference"] == "I am Nova, made by Acme Lab."
    assert row["messages"] == [{"role": "user", "content": "Who are you?"}]
    assert row["finish_reason"] in ("stop", "length")
    assert isinstance(row["prediction"], str)


def test_data_tokenize_cli_writes_every_kept_sample_in_order(tmp_path: Path, tiny_model: Path):
    from tests.conftest import FIXTURES

    out = tmp_path / "tok.jsonl"
    proc = subprocess.run([sys.executable, "-m", "glmtune", "data", "tokenize", "--model", str(tiny_model),
                           "--data", str(FIXTURES / "varied.jsonl"), "--out", str(out), "--combine", "false",
                           "--show", "2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 10
    assert all(len(r["input_ids"]) == len(r["labels"]) for r in rows)
    assert "sample 1" in proc.stdout and "wrote 10 samples" in proc.stdout

    proc = subprocess.run([sys.executable, "-m", "glmtune", "data", "tokenize", "--model", str(tiny_model),
                           "--data", str(FIXTURES / "bad.jsonl"), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "bad.jsonl:2: [malformed_json]" in proc.stdout
    assert "bad.jsonl:3: [unknown_role]" in proc.stdout
    assert "bad.jsonl:4: [no_reply]" in proc.stdout
    assert "bad.jsonl:5: [empty_reply]" in proc.stdout
    assert "bad.jsonl:6: [not_an_object]" in proc.stdout
    assert "bad.jsonl:7: [bad_tool_arguments]" in proc.stdout
    assert len(out.read_text().splitlines()) == 1
