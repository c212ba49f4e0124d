"""The fused LoRA sum gives PEFT's outputs and gradients, and steps aside wherever it would not."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from glmtune.experimental.cpu_kernels.fused_lora import fuse_lora
from glmtune.train.activation_checkpointing import enable_checkpointing


def lora_model(tiny_model: Path, dropout: float = 0.0, dtype: torch.dtype = torch.float32, **lora_kwargs):
    """The tiny GLM-4 with LoRA on every linear layer, B initialised non-zero so that the adapter matters."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=dtype)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear",
                        init_lora_weights=False, **lora_kwargs)
    return get_peft_model(base, config).train()


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Three rows of random ids, one padded, first positions untrained."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, 2000, (3, 17), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :5] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def loss_and_grads(model, seed: int = 0) -> tuple[float, dict[str, torch.Tensor]]:
    """One forward and backward pass (dropout seeded); the loss and every adapter gradient."""
    torch.manual_seed(seed)
    loss = model(**batch()).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return loss.item(), grads


def fused_path(model, dtype: torch.dtype = torch.float32) -> str | None:
    """How the first LoRA layer's output came out: "op" (glmtune::lora_linear), "addmm" (one addmm, the path
    under autocast) or None (PEFT's add)."""
    layer = next(m for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer"))
    out = layer(torch.randn(2, 5, layer.base_layer.in_features, dtype=dtype, requires_grad=True))
    name = out.grad_fn.next_functions[0][0].name()
    return "op" if "lora_linear" in name else "addmm" if name == "AddmmBackward0" else None


def fused_path_taken(model, dtype: torch.dtype = torch.float32) -> bool:
    """Whether the first LoRA layer took a fused path rather than PEFT's add."""
    return fused_path(model, dtype) is not None


def assert_same(a: tuple[float, dict], b: tuple[float, dict], tol: float = 1e-5) -> None:
    assert a[0] == pytest.approx(b[0], rel=tol, abs=tol)
    assert a[1].keys() == b[1].keys() and a[1]
    for name, grad in a[1].items():
        assert torch.allclose(grad, b[1][name], rtol=tol, atol=tol * grad.abs().max().item()), name


@pytest.mark.parametrize("checkpointing", [False, "selective", True])
def test_loss_and_gradients_equal_peft(tiny_model: Path, checkpointing: bool | str) -> None:
    """Every LoRA linear layer is fused, and loss and gradients match PEFT's to 1e-5 (fp32), checkpointed too."""
    model = lora_model(tiny_model)
    if checkpointing:
        enable_checkpointing(model, checkpointing)
    expected = loss_and_grads(model)
    assert not fused_path_taken(model)
    fused = fuse_lora(model)
    assert fused_path(model) == "op"
    assert fused == sum(type(m).__name__ == "Linear" and hasattr(m, "lora_A") for m in model.modules()) > 0
    assert_same(loss_and_grads(model), expected)


def test_dropout_consumes_the_same_random_numbers(tiny_model: Path) -> None:
    """With LoRA dropout the fused path draws the same mask, so a seeded step is unchanged."""
    model = lora_model(tiny_model, dropout=0.1)
    expected = loss_and_grads(model, seed=3)
    fuse_lora(model)
    assert_same(loss_and_grads(model, seed=3), expected)


def test_disabled_and_merged_adapters_fall_back(tiny_model: Path) -> None:
    """With the adapter switched off (the base anchor's pass) or merged, the output is the base model's."""
    model = lora_model(tiny_model).eval()
    fuse_lora(model)
    inputs = {k: v for k, v in batch().items() if k != "labels"}
    with torch.no_grad():
        with model.disable_adapter():
            base = model(**inputs).logits
        adapted = model(**inputs).logits
        model.merge_adapter()
        merged = model(**inputs).logits
        model.unmerge_adapter()
        assert torch.allclose(model(**inputs).logits, adapted, atol=1e-5)
    assert not torch.allclose(base, adapted, atol=1e-3)  # the adapter does change the output
    assert torch.allclose(merged, adapted, atol=1e-4)


def test_bf16_autocast_is_as_close_to_fp32_as_peft(tiny_model: Path) -> None:
    """Under bf16 autocast (how the Trainer runs bf16 on a GPU; here on CPU) the fused path is taken, and its loss
    and gradients are no further from the same model's fp32 results than PEFT's are."""
    model = lora_model(tiny_model, dtype=torch.bfloat16)
    reference = loss_and_grads(lora_model(tiny_model, dtype=torch.bfloat16).float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        peft = loss_and_grads(model)
        fuse_lora(model)
        assert fused_path(model, torch.bfloat16) == "addmm"
        fused = loss_and_grads(model)

    def error(got: tuple[float, dict]) -> float:
        parts = [torch.linalg.vector_norm(g.float() - reference[1][n]) / torch.linalg.vector_norm(reference[1][n])
                 for n, g in got[1].items()]
        return float(torch.stack(parts).mean())

    assert abs(fused[0] - reference[0]) <= 2 * abs(peft[0] - reference[0]) + 1e-3
    assert error(fused) <= 1.25 * error(peft), (error(fused), error(peft))


def test_mixed_dtypes_use_pefts_path(tiny_model: Path) -> None:
    """A bf16 base under fp32 adapters without autocast: PEFT sums in fp32, so its own forward runs."""
    model = lora_model(tiny_model, dtype=torch.bfloat16)
    layer = next(m for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer"))
    assert layer.lora_A["default"].weight.dtype == torch.float32 and layer.base_layer.weight.dtype == torch.bfloat16
    x = torch.randn(2, 5, layer.base_layer.in_features, dtype=torch.bfloat16)
    expected = layer(x)
    fuse_lora(model)
    assert torch.equal(layer(x), expected)
    assert not fused_path_taken(model, torch.bfloat16)


@pytest.mark.parametrize(("bias", "dropped"), [(True, False), (False, True)])
def test_operator_gradients_match_finite_differences(bias: bool, dropped: bool) -> None:
    """glmtune::lora_linear's hand-written backward passes gradcheck (fp64), with and without a bias, with the
    adapter's input the layer's own or a separate (dropped-out) tensor."""
    from glmtune.experimental.cpu_kernels.fused_lora import lora_linear

    g = torch.Generator().manual_seed(0)

    def rand(*shape: int, grad: bool = True) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(grad)

    x, weight, a, b = rand(6, 5), rand(7, 5), rand(3, 5), rand(7, 3)
    extra = rand(7) if bias else None
    x_dropped = rand(6, 5) if dropped else None

    def layer(x, weight, a, b, *rest):  # noqa: ANN001, ANN202
        return lora_linear(x, x if x_dropped is None else rest[-1], weight, rest[0] if bias else None, a, b, 1.5)[0]

    inputs = (x, weight, a, b, *([extra] if bias else []), *([x_dropped] if dropped else []))
    expected = x @ weight.t() + 1.5 * ((x if x_dropped is None else x_dropped) @ a.t()) @ b.t()
    if bias:
        expected = expected + extra
    assert torch.allclose(layer(*inputs), expected)
    assert torch.autograd.gradcheck(layer, inputs)


def test_selective_checkpointing_keeps_the_operator_output() -> None:
    """Selective checkpointing keeps the fused layer's output, so its backward never reruns the base product."""
    from torch.utils.checkpoint import CheckpointPolicy

    from glmtune.experimental.cpu_kernels.fused_lora import LORA_LINEAR
    from glmtune.train.activation_checkpointing import selective_policy

    assert selective_policy(None, LORA_LINEAR) == CheckpointPolicy.MUST_SAVE
