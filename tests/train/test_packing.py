"""Packing without cross-contamination: a packed batch's loss equals the samples' token-weighted loss."""

from __future__ import annotations

import json

import torch

from glmtune.layout import get_layout
from glmtune.train.collate import collator
from glmtune.train.plan_inputs import DataStats
from glmtune.train.plan_rules import rule_batching
from tests.conftest import FIXTURES


def test_packed_loss_equals_one_by_one(tiny_model, tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    layout = get_layout(tiny_tokenizer)
    convs = [json.loads(line)["messages"] for line in (FIXTURES / "varied.jsonl").read_text().splitlines()]
    samples = [layout.encode(c, combine=False) for c in convs]
    batch = collator(tiny_tokenizer, packing=True)([{"input_ids": s.input_ids, "labels": s.labels} for s in samples])
    assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist()
    assert len(starts) == len(samples)
    assert all(batch["labels"][0][i].item() == -100 for i in starts)  # no label crosses a boundary
    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa").eval()
    with torch.no_grad():
        packed = model(**batch, use_cache=False).loss.item()
        total, count = 0.0, 0
        for s in samples:
            labels = torch.tensor([s.labels])
            n = int((labels[:, 1:] != -100).sum())
            total += model(input_ids=torch.tensor([s.input_ids]), labels=labels, use_cache=False).loss.item() * n
            count += n
    assert abs(packed - total / count) < 1e-5


def test_planner_picks_packing_or_grouping_from_lengths():
    even = DataStats(100, 1000, 3000, 30, [30] * 100)
    assert rule_batching(even, 8, "sdpa", 128)[0] == "none"
    mixed = DataStats(100, 1000, 5000, 200, [10, 200] * 50)
    assert rule_batching(mixed, 8, "sdpa", 4096)[0] == "packing"  # wide model: padding costs more than attention
    assert rule_batching(mixed, 8, "sdpa", 128)[0] == "grouping"  # narrow model: packed rows' attention dominates
    huge = DataStats(100, 3 * 10**5, 100 * 4000, 8000, [100, 8000] * 50)
    assert rule_batching(huge, 8, "sdpa", 4096)[0] == "grouping"
    assert rule_batching(huge, 8, "flash_attention_2", 4096)[0] == "packing"
    assert rule_batching(mixed, 1, "sdpa", 4096)[0] == "none"


def test_training_with_packing_and_with_grouping(tmp_path, tiny_model):
    from glmtune.config.loader import validate_config
    from glmtune.train.recipe import train
    from tests.conftest import write_jsonl

    rows = [[{"role": "user", "content": "q" * (1 + i % 7) * 3}, {"role": "assistant", "content": "a" * (i % 11 + 1)}]
            for i in range(24)]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    for name, extra in (("packed", {"packing": True}), ("grouped", {"packing": False, "group_by_length": True})):
        cfg = validate_config({
            "model": {"name_or_path": str(tiny_model)}, "data": {"train_file": str(data), **extra},
            "training": {"output_dir": str(tmp_path / name), "max_steps": 8, "per_device_train_batch_size": 4, "logging_steps": 1,
                         "early_stopping": False, "report_to": []},
        })
        result = train(cfg)
        assert result.final_loss < result.first_loss
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert summary["packing"] is extra["packing"] and summary["pad_fraction_unpacked"] > 0
