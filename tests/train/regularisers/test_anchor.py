"""The base-model anchor: KL to the adapter-free model where the base already predicts the target."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from glmtune.train.chunked_loss import chunked_lm_loss, output_head
from glmtune.train.regularisers.anchor import anchor_kl, anchor_loss
from tests.train.test_chunked_loss import grads, lora_model


def test_kl_counts_only_rows_where_the_base_agrees_with_the_target() -> None:
    """Rows whose base top token is the target give KL(base || model); the others give exactly 0."""
    torch.manual_seed(0)
    logits, base = torch.randn(4, 11), torch.randn(4, 11)
    targets = base.argmax(-1).clone()
    targets[1] = (targets[1] + 1) % 11  # the data asks for a change here
    got = anchor_kl(logits, base, targets)
    p = F.softmax(base, -1)
    manual = (p * (F.log_softmax(base, -1) - F.log_softmax(logits, -1))).sum(-1)
    assert got[1] == 0
    assert torch.allclose(got[[0, 2, 3]], manual[[0, 2, 3]], atol=1e-6)
    assert (manual[[0, 2, 3]] > 0).all()
    assert torch.allclose(anchor_kl(base, base, targets), torch.zeros(4), atol=1e-6)  # no drift, no term


def test_loss_is_normalised_over_trained_positions_like_the_cross_entropy() -> None:
    """Prompt and padding positions (label -100) add nothing; the sum is divided by the trained count."""
    torch.manual_seed(1)
    logits, base = torch.randn(2, 6, 9), torch.randn(2, 6, 9)
    labels = torch.full((2, 6), -100)
    labels[:, 1:] = base[:, :-1].argmax(-1)  # the next token of every position agrees with the base
    labels[1, 4:] = -100
    trained = labels[:, 1:] != -100
    per_row = anchor_kl(logits[:, :-1][trained], base[:, :-1][trained], labels[:, 1:][trained])
    assert torch.allclose(anchor_loss(logits, base, labels), per_row.sum() / trained.sum())
    assert torch.allclose(anchor_loss(logits, base, labels, num_items=20), per_row.sum() / 20)
    assert anchor_loss(logits, base, torch.full((2, 6), -100)) == 0


def test_chunked_anchor_equals_the_full_logits_term_with_gradients(tiny_model: Path) -> None:
    """From final hidden states, a chunk at a time, the anchor term and its gradients equal the full version."""
    model = lora_model(tiny_model)  # adapter weights not zero: the model differs from its base
    ids = torch.randint(10, 2000, (2, 15), generator=torch.Generator().manual_seed(3))
    with torch.no_grad(), model.disable_adapter():
        base = model(input_ids=ids, output_hidden_states=True)
    labels = torch.full_like(ids, -100)
    labels[:, 1:] = base.logits[:, :-1].argmax(-1)
    labels[:, 1:4] = -100
    labels[0, 8] = (labels[0, 8] + 1) % 2000  # one position where the data disagrees with the base
    full = model(input_ids=ids)
    want_loss = anchor_loss(full.logits, base.logits, labels)
    want_loss.backward()
    want = grads(model)
    out = model(input_ids=ids, output_hidden_states=True, logits_to_keep=1)
    parts = chunked_lm_loss(out.hidden_states[-1], labels, output_head(model), chunk=5,
                            base_hidden=base.hidden_states[-1])
    parts.anchor.backward()
    got = grads(model)
    assert want_loss > 0
    assert torch.allclose(parts.anchor, want_loss, atol=1e-6)
    for name in want:
        assert torch.allclose(got[name], want[name], atol=1e-6, rtol=1e-4), name


@pytest.mark.parametrize("method, chunked", [("lora", False), ("lora", True), ("ptuning", True)])
def test_trainer_adds_the_weighted_term_from_the_adapter_free_model(tiny_model: Path, tmp_path: Path,
                                                                    method: str, chunked: bool) -> None:
    """GuardedTrainer's loss is cross-entropy + weight x anchor in training, plain cross-entropy in evaluation,
    for LoRA and prefix tuning (whose base model is the forward pass without the prefixes)."""
    from transformers import TrainingArguments

    from glmtune.train.trainer import GuardedTrainer

    model = lora_model(tiny_model, method)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    ids = torch.randint(10, 2000, (2, 12), generator=torch.Generator().manual_seed(4))
    with torch.no_grad(), model.disable_adapter():
        base = model(input_ids=ids).logits
    labels = ids.clone()
    labels[:, 1:] = base[:, :-1].argmax(-1)
    labels[:, :3] = -100
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    plain = GuardedTrainer(model=model, args=args).compute_loss(model, dict(inputs))
    with torch.no_grad():
        term = anchor_loss(model(input_ids=ids).logits, base, labels)
    anchored = GuardedTrainer(model=model, args=args, chunked_loss=chunked, anchor_weight=2.0)
    got = anchored.compute_loss(model, dict(inputs))
    assert term > 0
    assert torch.allclose(got, plain + 2.0 * term, atol=1e-5)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(anchored.compute_loss(model, dict(inputs)), plain, atol=1e-5)
    with torch.no_grad():  # the adapter is back on after the base model's pass
        assert not torch.allclose(model(input_ids=ids).logits, base)


def test_anchor_without_an_adapter_is_a_config_error(tiny_model: Path, tmp_path: Path) -> None:
    """Full or freeze fine-tuning has no adapter-free base to anchor to: the key is named before data is read."""
    from glmtune.config.loader import ConfigError, validate_config
    from glmtune.train.recipe import train

    cfg = validate_config({"model": {"name_or_path": str(tiny_model)},
                           "data": {"train_file": str(tmp_path / "missing.jsonl")},
                           "peft": {"method": "freeze"},
                           "training": {"output_dir": str(tmp_path / "run"), "max_steps": 1, "report_to": [],
                                        "base_anchor": 0.5}})
    with pytest.raises(ConfigError, match="training.base_anchor: needs an adapter"):
        train(cfg)


def test_planned_anchor_is_dropped_for_a_base_that_answers_nothing(tiny_model: Path, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """An untrained base finishes no self-replay reply: the final plan (printed and saved) has the anchor off,
    and the unlikelihood term that the planner ties to it off too; a weight the user set is kept."""
    import json

    from glmtune.config.loader import validate_config
    from glmtune.train.plan import ModelFacts, make_plan
    from glmtune.train.plan_inputs import DataStats
    from glmtune.train.recipe import train
    from tests.conftest import write_jsonl

    convs = [[{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"Answer {i}."}]
             for i in range(20)]
    cfg = validate_config({"model": {"name_or_path": str(tiny_model)},
                           "data": {"train_file": str(write_jsonl(tmp_path / "d.jsonl", convs))},
                           "identity": {"name": "Nova"},
                           "training": {"output_dir": str(tmp_path / "run"), "max_steps": 1, "report_to": []}})
    caplog.set_level(logging.INFO, logger="glmtune")
    result = train(cfg)
    lines = caplog.messages
    assert any(line.startswith("self-replay: 0 of") for line in lines)
    saved = {item["key"]: item for item in json.loads((tmp_path / "run" / "plan.json").read_text())["plan"]}
    assert saved["training.base_anchor"]["value"] == 0.0 and "none of its self-replay" in saved[
        "training.base_anchor"]["reason"]
    assert saved["identity.unlikelihood"]["value"] == 0.0  # the planner's rule follows the anchor
    assert result.plan.config.training.base_anchor == 0.0 and not any("unlikelihood: weight" in x for x in lines)
    plan_text = "\n".join(lines)
    assert "none of its self-replay" in plan_text  # the printed plan says so, before training

    stats = DataStats(20, 200, 600)

    def anchor(base_answers: int | None, **training: float) -> float:
        config = validate_config({"model": {"name_or_path": "m"}, "data": {"train_file": str(tmp_path / "d.jsonl")},
                                  "training": training})
        plan = make_plan(config, stats, 1_000_000, False, facts=ModelFacts(base_answers=base_answers))
        return plan.value("training.base_anchor")

    assert anchor(0, base_anchor=1.0) == 1.0  # set by the user: kept
    assert anchor(None) == 1.0  # self-replay did not run: nothing known
    assert anchor(12) == 1.0 and anchor(0) == 0.0
