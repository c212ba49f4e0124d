"""Fused LoRA sum: the base output plus the scaled adapter product in one ``addmm``.

PEFT computes a LoRA linear layer as ``base(x) + lora_B(lora_A(x)) * scaling``: the adapter's full-width output
(tokens x out_features) is written, scaled into a second tensor, then added into a third, and the backward pass
scales the full-width gradient once more. ``torch.addmm(base(x), lora_A(x), B.T, alpha=scaling)`` is the same
sum written once; its backward computes B's gradient as ``(A x)^T @ grad`` (rank rows by out_features), a shape
that matrix libraries handle far better than PEFT's ``grad^T @ (A x)`` (out_features rows by rank). Same values
to fp32 rounding (tests/test_fused_lora.py); under bf16 autocast the sum is rounded to bf16 once instead of three
times (adapter output, scaled copy, sum).

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


def fused_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """``base(x) + B(A(dropout(x))) * scaling`` as one ``addmm``; PEFT's forward wherever that would differ."""
    name = _fusable(self, x, args, kwargs)
    if name is None:
        return type(self).forward(self, x, *args, **kwargs)
    result = self.base_layer(x)
    lora_a = F.linear(self.lora_dropout[name](x), self.lora_A[name].weight)
    b_t = self.lora_B[name].weight.t().contiguous()  # row-major (rank x out): B's gradient comes out in that shape
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
