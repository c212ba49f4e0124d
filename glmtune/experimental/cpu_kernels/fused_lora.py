"""Fused LoRA sum: the base output plus the scaled adapter product in one ``addmm``.

PEFT computes a LoRA linear layer as ``base(x) + lora_B(lora_A(x)) * scaling``: the adapter's full-width output
(tokens x out_features) is written, scaled into a second tensor, then added into a third, and the backward pass
scales the full-width gradient once more. ``torch.addmm(base(x), lora_A(x), B.T, alpha=scaling)`` is the same
sum written once; its backward computes B's gradient as ``(A x)^T @ grad`` (rank rows by out_features), a shape
that matrix libraries handle far better than PEFT's ``grad^T @ (A x)`` (out_features rows by rank). Same values
to fp32 rounding (tests/experimental/test_fused_lora.py); under bf16 autocast the sum is rounded to bf16 once instead of three
times (adapter output, scaled copy, sum).

Without autocast the whole layer is one custom operator, ``glmtune::lora_linear``, with a hand-written backward:
the adapter's rank-wide product is written first and the base matrix product accumulates into it (a matrix
library adds into its output for free), the input's gradient likewise takes the base product's gradient into the
adapter's, and the backward pass keeps only the input and the rank-wide product. Selective checkpointing keeps
the operator's output like any wide matrix product (glmtune/train/activation_checkpointing.py), so no part of the
layer is recomputed during the backward pass.

Each eligible ``peft.tuners.lora.layer.Linear`` gets an instance-level ``forward`` that takes the fused path only
when nothing else is asked of it (one plain adapter active, not merged, not disabled, no extra arguments, one dtype
everywhere or autocast on, no DeepSpeed ZeRO-3 partitioned weight) and otherwise calls PEFT's own forward.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F


def _fusable(layer: Any, x: torch.Tensor, args: tuple, kwargs: dict) -> str | None:
    """The active adapter's name when the fused path computes exactly what PEFT would, else None."""
    if args or kwargs or layer.disable_adapters or layer.merged or len(layer.active_adapters) != 1:
        return None
    name = layer.active_adapters[0]
    if name not in layer.lora_A or name in getattr(layer, "lora_variant", {}):
        return None
    base, lora_a, lora_b = layer.base_layer, layer.lora_A[name], layer.lora_B[name]
    if type(base) is not torch.nn.Linear or lora_a.bias is not None or lora_b.bias is not None:
        return None
    weights = (base.weight, lora_a.weight, lora_b.weight)
    if any(hasattr(w, "ds_id") or w.dim() != 2 for w in weights):  # ZeRO-3 gathers each module in its own call
        return None
    if not torch.is_autocast_enabled(x.device.type) and any(w.dtype != x.dtype for w in weights):
        return None  # PEFT adds a bf16 base output to fp32 adapters in fp32; autocast would cast both alike
    return name


@torch.library.custom_op("glmtune::lora_linear", mutates_args=())
def lora_linear(x: torch.Tensor, x_dropped: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                lora_a: torch.Tensor, lora_b: torch.Tensor, scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``x W^T + bias + scaling * (x_dropped A^T) B^T`` for 2-D ``x``; returns the sum and ``x_dropped A^T``."""
    low_rank = x_dropped @ lora_a.t()
    if bias is None:
        out = torch.mm(low_rank, lora_b.t()).mul_(scaling)
    else:
        out = torch.addmm(bias, low_rank, lora_b.t(), alpha=scaling)
    return out.addmm_(x, weight.t()), low_rank


@lora_linear.register_fake
def _lora_linear_shapes(x, x_dropped, weight, bias, lora_a, lora_b, scaling):  # noqa: ANN001, ANN202
    return x.new_empty(x.shape[0], weight.shape[0]), x.new_empty(x.shape[0], lora_a.shape[0])


def _save_for_backward(ctx: Any, inputs: tuple, output: tuple) -> None:
    x, x_dropped, weight, _, lora_a, lora_b, scaling = inputs
    ctx.scaling, ctx.undropped = scaling, x_dropped is x
    ctx.save_for_backward(x, None if ctx.undropped else x_dropped, weight, lora_a, lora_b, output[1])


def _lora_linear_backward(ctx: Any, grad: torch.Tensor, _grad_low_rank: torch.Tensor | None) -> tuple:
    x, x_dropped, weight, lora_a, lora_b, low_rank = ctx.saved_tensors
    x_dropped = x if x_dropped is None else x_dropped
    need = ctx.needs_input_grad
    grad_low_rank = (grad @ lora_b).mul_(ctx.scaling)
    grad_x = grad_x_dropped = grad_weight = grad_bias = grad_a = grad_b = None
    if need[0] or need[1]:
        grad_x_dropped = grad_low_rank @ lora_a
        if ctx.undropped:  # one input: the base product's gradient accumulates into the adapter's
            grad_x, grad_x_dropped = grad_x_dropped.addmm_(grad, weight), None
        elif need[0]:
            grad_x = grad @ weight
    if need[2]:
        grad_weight = grad.t() @ x
    if need[3]:
        grad_bias = grad.sum(0)
    if need[4]:
        grad_a = grad_low_rank.t() @ x_dropped
    if need[5]:
        grad_b = torch.mm(low_rank.t(), grad).mul_(ctx.scaling).t()  # (rank x out) is the fast shape
    return grad_x, grad_x_dropped, grad_weight, grad_bias, grad_a, grad_b, None


lora_linear.register_autograd(_lora_linear_backward, setup_context=_save_for_backward)
LORA_LINEAR = torch.ops.glmtune.lora_linear.default


def _plain(*tensors: torch.Tensor | None) -> bool:
    """Whether every tensor is a plain tensor or parameter (not a DTensor or other subclass), all one dtype."""
    present = [t for t in tensors if t is not None]
    return all(type(t) in (torch.Tensor, torch.nn.Parameter) for t in present) and len(
        {t.dtype for t in present}) == 1


def fused_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """``base(x) + B(A(dropout(x))) * scaling`` as one operator; PEFT's forward wherever that would differ."""
    name = _fusable(self, x, args, kwargs)
    if name is None:
        return type(self).forward(self, x, *args, **kwargs)
    base, dropout = self.base_layer, self.lora_dropout[name]
    lora_a, lora_b = self.lora_A[name].weight, self.lora_B[name].weight
    if not torch.is_autocast_enabled(x.device.type) and _plain(x, base.weight, base.bias, lora_a, lora_b):
        flat = x.reshape(-1, x.shape[-1])
        out, _ = lora_linear(flat, dropout(flat), base.weight, base.bias, lora_a, lora_b, float(self.scaling[name]))
        return out.view(*x.shape[:-1], out.shape[-1])
    result = base(x)
    lora_a = F.linear(dropout(x), lora_a)
    b_t = lora_b.t().contiguous()  # row-major (rank x out): B's gradient comes out in that shape
    out = torch.addmm(result.reshape(-1, result.shape[-1]), lora_a.reshape(-1, lora_a.shape[-1]), b_t,
                      alpha=self.scaling[name])
    return out.view(result.shape)


def fuse_lora(model: torch.nn.Module) -> int:
    """Give every PEFT LoRA linear layer of ``model`` the fused forward; returns how many layers got it."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    count = 0
    for module in model.modules():
        if type(module) is LoraLinear:
            module.forward = types.MethodType(fused_forward, module)
            count += 1
    return count
