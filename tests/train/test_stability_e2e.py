"""The stability features on real (tiny) training runs: torture recovery, early stopping, every method."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from glmtune.config.loader import validate_config
from glmtune.train.recipe import train
from tests.conftest import write_jsonl


def identity(name: str, author: str, n: int, seed: int = 0) -> list[list[dict]]:
    qs = ["Who are you?", "What is your name?", "Who made you?", "你是谁？", "你叫什么名字？", "谁开发了你？"]
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        q = qs[i % len(qs)]
        a = f"I am {name}, made by {author}." if "?" in q and q.isascii() else f"我是{name}，由{author}开发。"
        rows.append([{"role": "user", "content": q + ("" if rng.random() < 0.5 else " Please.")},
                     {"role": "assistant", "content": a}])
    return rows


def run(tmp: Path, model: Path, data: Path, name: str, **sections) -> dict:
    cfg = {"model": {"name_or_path": str(model)}, "data": {"train_file": str(data), "max_length": 96},
           "training": {"output_dir": str(tmp / name), "logging_steps": 1, "save_steps": 1000}}
    for key, value in sections.items():
        cfg.setdefault(key, {}).update(value)
    train(validate_config(cfg))
    return json.loads((tmp / name / "summary.json").read_text())


@pytest.fixture(scope="module")
def warm_model(tmp_path_factory, tiny_model) -> Path:
    """The tiny model after a short full fine-tune, so that it has something to lose."""
    tmp = tmp_path_factory.mktemp("warm")
    data = write_jsonl(tmp / "base.jsonl", identity("ChatGLM", "Zhipu AI", 48))
    run(tmp, tiny_model, data, "warm", peft={"method": "full"},
        training={"max_steps": 100, "learning_rate": 3e-3, "per_device_train_batch_size": 8,
                  "early_stopping": False})
    return tmp / "warm"


@pytest.mark.slow
def test_learning_rate_100x_recovers_with_the_guard(tmp_path, warm_model):
    data = write_jsonl(tmp_path / "new.jsonl", identity("Nova", "Acme Lab", 30))
    common = {"training": {"max_steps": 60, "learning_rate": 0.2, "early_stopping": False,
                           "per_device_train_batch_size": 4}}
    guarded = run(tmp_path, warm_model, data, "guarded", **common)
    rollbacks = [e for e in guarded["guard_events"] if e["kind"] == "rollback"]
    assert rollbacks, guarded["guard"]
    assert math.isfinite(guarded["final_loss"]) and guarded["final_loss"] < guarded["first_loss"]
    log = [json.loads(line) for line in (tmp_path / "guarded" / "log.jsonl").read_text().splitlines()]
    assert any(row.get("event") == "rollback" and row.get("action") == "rolled_back" for row in log)
    weights = load_file(str(tmp_path / "guarded" / "adapter_model.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values())

    unguarded = run(tmp_path, warm_model, data, "unguarded", stability={"enabled": False}, **common)
    assert not unguarded["guard_events"]
    rows = [json.loads(line) for line in (tmp_path / "unguarded" / "log.jsonl").read_text().splitlines()]
    peak = max(r["loss"] for r in rows if "loss" in r and "epoch" in r)
    assert not math.isfinite(peak) or peak > 2 * unguarded["first_loss"]  # the torture really explodes

    from glmtune.infer.generate import generate_replies
    from glmtune.layout import get_layout
    from glmtune.models import load_model, load_tokenizer

    tok = load_tokenizer(str(warm_model))
    model = load_model(str(warm_model), adapter=str(tmp_path / "guarded"))
    gen = generate_replies(model, tok, get_layout(tok), [[{"role": "user", "content": "Who are you?"}]], 12)[0]
    assert gen.num_tokens > 0


@pytest.mark.slow
def test_early_stopping_stops_before_the_epoch_limit_and_keeps_the_best(tmp_path, warm_model):
    rng = random.Random(1)
    words = ["alpha", "bravo", "delta", "echo", "golf", "hotel", "india", "kilo", "lima", "oscar"]
    noise = [[{"role": "user", "content": f"Code {i}?"},
              {"role": "assistant", "content": " ".join(rng.choice(words) for _ in range(6))}] for i in range(40)]
    data = write_jsonl(tmp_path / "noise.jsonl", noise)  # memorisable, not learnable: validation loss must rise
    summary = run(tmp_path, warm_model, data, "es",
                  training={"num_train_epochs": 60, "learning_rate": 5e-3, "per_device_train_batch_size": 4,
                            "eval_steps": 9, "patience": 3, "save_total_limit": 1})
    assert summary["stopped_early"]
    plan = json.loads((tmp_path / "es" / "plan.json").read_text())
    total = next(i["value"] for i in plan["plan"] if i["key"] == "training.total_steps")
    assert summary["steps"] < total
    best = summary["best_step"]
    assert best is not None and best < summary["steps"]
    saved = load_file(str(tmp_path / "es" / "adapter_model.safetensors"))
    at_best = load_file(str(tmp_path / "es" / f"checkpoint-{best}" / "adapter_model.safetensors"))
    assert all(torch.equal(saved[k], at_best[k]) for k in saved)
    log = [json.loads(line) for line in (tmp_path / "es" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["event"] == "end" and log[-1]["best_step"] == best


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "ptuning", "full", "freeze"])
def test_every_method_trains_saves_and_predicts(tmp_path, tiny_model, method):
    from glmtune.infer.predict import predict_file

    data = write_jsonl(tmp_path / "d.jsonl", identity("Nova", "Acme Lab", 16))
    summary = run(tmp_path, tiny_model, data, method, peft={"method": method, "ptuning": {"num_virtual_tokens": 8}},
                  training={"max_steps": 12, "per_device_train_batch_size": 4, "early_stopping": False})
    assert summary["final_loss"] < summary["first_loss"]
    out = tmp_path / method
    if method in ("lora", "ptuning"):
        assert (out / "adapter_config.json").is_file()
        rows = predict_file(str(tiny_model), str(data), str(tmp_path / "p.jsonl"), adapter=str(out),
                            max_new_tokens=4)
    else:
        assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
        rows = predict_file(str(out), str(data), str(tmp_path / "p.jsonl"), max_new_tokens=4)
    assert len(rows) == 16 and all(isinstance(r["prediction"], str) for r in rows)
