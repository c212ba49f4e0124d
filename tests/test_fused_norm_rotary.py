"""The fused RMSNorm and complex rotary give transformers' values, and a training run uses them (and LoRA's)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from glmtune.train.checkpointing import enable_checkpointing
from glmtune.train.fused_norm import RMSNormFunction, fuse_norms
from glmtune.train.fused_rotary import complex_rotary, fused_rotary, rotary_families
from tests.test_fused_lora import assert_same, lora_model, loss_and_grads


@pytest.mark.parametrize("weight_trains", [True, False])
def test_norm_gradients_match_finite_differences(weight_trains: bool) -> None:
    """The closed-form backward passes gradcheck (fp64), for a training and a frozen norm weight."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=weight_trains)
    expected = weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))
    assert torch.allclose(RMSNormFunction.apply(x, weight, 1e-6), expected)
    assert torch.autograd.gradcheck(lambda x, w: RMSNormFunction.apply(x, w, 1e-6), (x, weight))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_norm_equals_transformers(tiny_model: Path, dtype: torch.dtype) -> None:
    """Every norm of the tiny GLM-4 is fused; outputs are equal and gradients equal to the dtype's rounding."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=dtype)
    norm = model.model.layers[0].input_layernorm
    with torch.no_grad():
        norm.weight.normal_()
    x = torch.randn(2, 5, norm.weight.shape[0], dtype=dtype, requires_grad=True)
    expected = norm(x)
    expected_grads = torch.autograd.grad(expected.pow(2).sum(), (x, norm.weight))
    count = fuse_norms(model)
    assert count == sum(type(m).__name__ == "Glm4RMSNorm" for m in model.modules()) > 0
    got = norm(x)
    assert torch.equal(got, expected)
    grads = torch.autograd.grad(got.pow(2).sum(), (x, norm.weight))
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    for a, b in zip(grads, expected_grads, strict=True):
        assert torch.allclose(a.float(), b.float(), rtol=tol, atol=tol * b.abs().max().item())


def _rotary_inputs(dtype: torch.dtype, rotary_dim: int) -> tuple[torch.Tensor, ...]:
    """Queries and keys laid out as GLM-4's attention hands them over (a transposed view), and cos/sin."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 5, 4, 8, generator=g).to(dtype).transpose(1, 2).requires_grad_()
    k = torch.randn(2, 5, 2, 8, generator=g).to(dtype).transpose(1, 2).requires_grad_()
    angles = torch.arange(5)[None, :, None] * torch.rand(1, 1, rotary_dim // 2, generator=g)
    angles = torch.cat([angles, angles], dim=-1).expand(2, -1, -1)
    return q, k, angles.cos().to(dtype), angles.sin().to(dtype)


@pytest.mark.parametrize("rotary_dim", [4, 8])
def test_complex_rotary_equals_transformers(rotary_dim: int) -> None:
    """Partial (glm-4-9b) and full rotary: the complex product gives transformers' values and gradients."""
    from transformers.models.glm4.modeling_glm4 import apply_rotary_pos_emb

    q, k, cos, sin = _rotary_inputs(torch.float32, rotary_dim)
    expected = apply_rotary_pos_emb(q, k, cos, sin)
    got = complex_rotary(apply_rotary_pos_emb)(q, k, cos, sin)
    for a, b in zip(got, expected, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    weights = [torch.randn_like(t) for t in expected]
    grads = torch.autograd.grad(sum((a * w).sum() for a, w in zip(got, weights, strict=True)), (q, k))
    expected_grads = torch.autograd.grad(sum((a * w).sum() for a, w in zip(expected, weights, strict=True)), (q, k))
    for a, b in zip(grads, expected_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_bf16_rotary_keeps_transformers_function() -> None:
    """bf16 has no complex type to multiply in: transformers' own function runs, bit for bit."""
    from transformers.models.glm4.modeling_glm4 import apply_rotary_pos_emb

    q, k, cos, sin = _rotary_inputs(torch.bfloat16, 4)
    for a, b in zip(complex_rotary(apply_rotary_pos_emb)(q, k, cos, sin), apply_rotary_pos_emb(q, k, cos, sin),
                    strict=True):
        assert torch.equal(a, b)


def test_fused_rotary_swaps_in_and_restores(tiny_model: Path) -> None:
    """Inside the block GLM-4 rotates by the complex product (once, even nested); afterwards the original is back."""
    from transformers import AutoModelForCausalLM
    from transformers.models.glm4 import modeling_glm4

    original = modeling_glm4.apply_rotary_pos_emb
    assert rotary_families(AutoModelForCausalLM.from_pretrained(tiny_model)) == [modeling_glm4.__name__]
    with fused_rotary() as swapped:
        assert swapped == 2 and modeling_glm4.apply_rotary_pos_emb.original is original
        with fused_rotary() as again:
            assert again == 0
        assert modeling_glm4.apply_rotary_pos_emb.original is original
    assert modeling_glm4.apply_rotary_pos_emb is original


@pytest.mark.parametrize("checkpointing", [False, "selective"])
def test_model_loss_and_gradients_unchanged(tiny_model: Path, checkpointing: bool | str) -> None:
    """LoRA on the tiny GLM-4 with norms fused and the complex rotary: PEFT's loss and gradients to 1e-5."""
    from glmtune.train.fused_lora import fuse_lora

    model = lora_model(tiny_model)
    if checkpointing:
        enable_checkpointing(model, checkpointing, say=lambda *_: None)
    expected = loss_and_grads(model)
    fuse_lora(model)
    fuse_norms(model)
    with fused_rotary():
        assert_same(loss_and_grads(model), expected)


def test_training_uses_fused_layers_and_says_so(tiny_model: Path, tmp_path: Path) -> None:
    """A LoRA run says what it fused; with ``fused_lora`` and ``fused_norm_rotary`` off nothing is, same loss."""
    from glmtune.config.loader import validate_config
    from glmtune.train.recipe import train
    from tests.conftest import write_jsonl

    convs = [[{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"Answer {i}."}]
             for i in range(8)]
    data = write_jsonl(tmp_path / "d.jsonl", convs)
    said: dict[bool, list[str]] = {}
    losses = {}
    for fused in (True, False):
        said[fused] = []
        cfg = validate_config({"model": {"name_or_path": str(tiny_model)}, "data": {"train_file": str(data)},
                               "training": {"output_dir": str(tmp_path / f"run-{fused}"), "max_steps": 2,
                                            "report_to": [], "fused_lora": fused, "fused_norm_rotary": fused}})
        losses[fused] = train(cfg, say=said[fused].append).final_loss
    assert any(line.startswith("fused LoRA: 24 linear layers") for line in said[True]), said[True]
    assert any(line.startswith("fused norms: 17 RMSNorm layers; rotary as a complex product: yes")
               for line in said[True]), said[True]
    assert not any(line.startswith("fused") for line in said[False])
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)


def test_bench_forwards_give_the_same_losses(tiny_model: Path) -> None:
    """bench.fused_lora's three forwards (peft, fused, all) train to the same losses under selective checkpointing
    with a padded batch, each step's loss within 1e-5."""
    from bench.checkpointing import child

    runs = {lora: child("selective", str(tiny_model), 4, 24, 2, lora)["losses"] for lora in ("peft", "fused", "all")}
    for lora in ("fused", "all"):
        assert runs[lora] == pytest.approx(runs["peft"], rel=1e-5), (lora, runs)
