"""Activation checkpointing: every mode computes the same gradients; selective keeps matmuls, recomputes the rest."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from glmtune.config.loader import ConfigError, validate_config
from glmtune.train import activation_checkpointing
from glmtune.train.activation_checkpointing import enable_checkpointing, selective_policy


def lora_grads(model_dir: Path, mode: bool | str) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss and LoRA gradients of one fixed batch with checkpointing ``mode``."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    assert enable_checkpointing(model, mode) == mode
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                                             init_lora_weights=False))
    model.train()
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(10, 200, (3, 40), generator=gen)
    mask = torch.ones_like(ids)
    mask[2, 25:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_every_mode_gives_the_same_gradients(tiny_model: Path) -> None:
    """Full and selective checkpointing only change what is recomputed, never the loss or the gradients."""
    loss, grads = lora_grads(tiny_model, False)
    for mode in ("selective", True):
        loss_m, grads_m = lora_grads(tiny_model, mode)
        assert loss_m == pytest.approx(loss, abs=1e-6)
        assert grads_m.keys() == grads.keys() and len(grads) > 0
        for name, g in grads.items():
            torch.testing.assert_close(grads_m[name], g, rtol=1e-5, atol=1e-7, msg=name)


def test_selective_policy_keeps_wide_matmuls_and_attention(tiny_model: Path, monkeypatch) -> None:
    """The policy saves the base model's projections and attention; norms, SiLU and thin LoRA products recompute."""
    from torch.utils.checkpoint import CheckpointPolicy

    decisions: dict[str, set] = {}

    def recording(ctx, func, *args, **kwargs):
        verdict = selective_policy(ctx, func, *args, **kwargs)
        if not ctx.is_recompute:
            decisions.setdefault(func.__name__.split(".")[0], set()).add(verdict)
        return verdict

    monkeypatch.setattr(activation_checkpointing, "selective_policy", recording)
    monkeypatch.setattr(activation_checkpointing, "SAVE_MIN_INNER_DIM", 64)  # the tiny model is 128 wide, LoRA r is 8
    lora_grads(tiny_model, "selective")
    saved = {op for op, verdicts in decisions.items() if CheckpointPolicy.MUST_SAVE in verdicts}
    assert any("scaled_dot_product" in op for op in saved)
    assert "mm" in saved or "addmm" in saved
    assert CheckpointPolicy.PREFER_RECOMPUTE in decisions["mm"]  # the LoRA B products (inner dimension r=8)
    for op in ("silu", "mul", "rsqrt"):
        assert decisions.get(op) == {CheckpointPolicy.PREFER_RECOMPUTE}, op


def test_config_takes_selective_and_names_a_bad_value(tiny_model: Path) -> None:
    """``selective`` is a valid setting; anything else names the key."""
    base = {"model": {"name_or_path": str(tiny_model)}, "data": {"train_file": "x.jsonl"}}
    cfg = validate_config({**base, "training": {"gradient_checkpointing": "selective"}})
    assert cfg.training.gradient_checkpointing == "selective"
    with pytest.raises(ConfigError, match="training.gradient_checkpointing"):
        validate_config({**base, "training": {"gradient_checkpointing": "sometimes"}})


def test_ptuning_never_checkpoints(tiny_model: Path, tmp_path: Path) -> None:
    """PEFT prefix tuning refuses activation checkpointing: the plan keeps it off, an explicit value names the key."""
    from glmtune.train.plan import DataStats, ModelShape, make_plan
    from glmtune.train.recipe import train
    from tests.conftest import write_jsonl

    stats = DataStats(300, 60_000, 150_000, 512, [500] * 300)
    shape = ModelShape(1_057_152, 128, 384, 4, 3000)
    base = {"model": {"name_or_path": str(tiny_model)}, "data": {"train_file": "x.jsonl"}}
    plan = make_plan(validate_config({**base, "peft": {"method": "ptuning"}}), stats, shape.params, False,
                     shape=shape)
    item = next(i for i in plan.items if i.key == "training.gradient_checkpointing")
    assert item.value is False and "prefix tuning" in item.reason
    lora = make_plan(validate_config(base), stats, shape.params, False, shape=shape)
    assert next(i.value for i in lora.items if i.key == "training.gradient_checkpointing") == "selective"
    data = write_jsonl(tmp_path / "d.jsonl", [[{"role": "user", "content": f"q{i}"},
                                               {"role": "assistant", "content": f"a{i}"}] for i in range(8)])
    cfg = validate_config({"model": {"name_or_path": str(tiny_model)}, "data": {"train_file": str(data)},
                           "peft": {"method": "ptuning"},
                           "training": {"output_dir": str(tmp_path / "run"), "max_steps": 1, "report_to": [],
                                        "gradient_checkpointing": "selective"}})
    with pytest.raises(ConfigError, match="training.gradient_checkpointing: P-tuning"):
        train(cfg)
