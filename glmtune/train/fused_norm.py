"""RMSNorm with a hand-written backward pass: the same values in fewer passes over the activations.

transformers' RMSNorm (GLM, GLM-4, Llama, Qwen2, Qwen3 all share it) is six tensor operations, and autograd
differentiates each one on its own: about ten full-size passes over the hidden states per backward, and the
norm weight's gradient computed even when the weight is frozen, as it is under LoRA. The norm's gradient has a
closed form, ``rstd * (g' - x_hat * mean(g' * x_hat))`` with ``g' = grad * weight``, which takes four passes;
the weight's gradient is computed only when the weight trains. The forward pass is transformers' own formula,
operation for operation, so outputs are equal; gradients equal to fp32 rounding (tests/test_fused_norm_rotary.py).
On the throughput benchmark's CPU a decoder layer has four of these norms.
"""

from __future__ import annotations

import types
from typing import Any

import torch

NORM_CLASSES = frozenset({"GlmRMSNorm", "Glm4RMSNorm", "LlamaRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm"})


class RMSNormFunction(torch.autograd.Function):
    """``weight * (x * rsqrt(mean(x^2) + eps))``, normalised in fp32 (fp64 stays fp64), with a closed-form backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        wide = x.to(torch.promote_types(x.dtype, torch.float32))
        rstd = torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + eps)
        ctx.save_for_backward(x, weight, rstd)
        return weight * (wide * rstd).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        x, weight, rstd = ctx.saved_tensors
        x_hat = x.to(rstd.dtype) * rstd
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_hat = (grad * weight).to(x.dtype).to(rstd.dtype)
            mean = torch.linalg.vecdot(grad_hat, x_hat).unsqueeze(-1).div_(x.shape[-1])
            grad_x = torch.addcmul(grad_hat, x_hat, mean, value=-1).mul_(rstd).to(x.dtype)
        if ctx.needs_input_grad[1]:
            grad_weight = (grad * x_hat.to(x.dtype)).sum(tuple(range(grad.dim() - 1))).to(weight.dtype)
        return grad_x, grad_weight, None


def fused_norm_forward(self: Any, hidden_states: torch.Tensor) -> torch.Tensor:
    """The norm through ``RMSNormFunction``; the module's own forward for tensor subclasses (DTensor and the like)."""
    if type(self.weight) not in (torch.Tensor, torch.nn.Parameter) or type(hidden_states) is not torch.Tensor:
        return type(self).forward(self, hidden_states)
    return RMSNormFunction.apply(hidden_states, self.weight, self.variance_epsilon)


def fuse_norms(model: torch.nn.Module) -> int:
    """Give every transformers RMSNorm of a known family in ``model`` the fused forward; returns how many."""
    count = 0
    for module in model.modules():
        if type(module).__name__ in NORM_CLASSES and hasattr(module, "variance_epsilon"):
            module.forward = types.MethodType(fused_norm_forward, module)
            count += 1
    return count
