"""GLM's rotary position embedding as one complex multiplication.

GLM and GLM-4 rotate interleaved pairs ``(x[2j], x[2j+1])`` of the first part of each head (half of it for
glm-4-9b). transformers writes that as ``x * cos + rotate_half(x) * sin``, with ``rotate_half`` two strided
slices, a negation, a stack and a flatten: six full-size tensors forward and as many backward, for each of
queries and keys. Read as complex numbers the pairs are rotated by ``cos + i sin`` in one multiplication, whose
backward autograd already knows (multiply by the conjugate): the way ChatGLM's own modelling code computes it.
Same values to fp32 rounding (tests/test_fused_norm_rotary.py). fp16 and bf16 tensors, which have no complex
counterpart torch can multiply here, and tensors whose layout cannot be viewed as complex keep transformers'
function.

The rotation lives in a module-level function of transformers' modelling files, so ``fused_rotary()`` swaps it in
for the duration of a ``with`` block (training) and restores the original afterwards.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator

import torch

GLM_MODELING = ("transformers.models.glm.modeling_glm", "transformers.models.glm4.modeling_glm4")


def _complex_ready(x: torch.Tensor, rotary_dim: int) -> bool:
    """Whether the first ``rotary_dim`` features of ``x`` can be viewed as complex pairs without a copy."""
    return (x.dtype in (torch.float32, torch.float64) and type(x) is torch.Tensor and x.stride(-1) == 1
            and rotary_dim % 2 == 0 and rotary_dim <= x.shape[-1] and x.storage_offset() % 2 == 0
            and all(stride % 2 == 0 for stride in x.stride()[:-1]))


def _rotate(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """``x`` with its first ``2 * rotation.shape[-1]`` features rotated pairwise by the complex ``rotation``."""
    rotary_dim = 2 * rotation.shape[-1]
    pairs = torch.view_as_complex(x[..., :rotary_dim].unflatten(-1, (rotary_dim // 2, 2)))
    rotated = torch.view_as_real(pairs * rotation).flatten(-2)
    return rotated if rotary_dim == x.shape[-1] else torch.cat([rotated, x[..., rotary_dim:]], dim=-1)


def complex_rotary(original: Callable) -> Callable:
    """A drop-in ``apply_rotary_pos_emb`` for GLM's interleaved rotary that falls back to ``original``."""

    def apply_rotary_pos_emb(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                             unsqueeze_dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        rotary_dim = cos.shape[-1]
        if not (cos.dtype == sin.dtype == q.dtype == k.dtype and _complex_ready(q, rotary_dim)
                and _complex_ready(k, rotary_dim)):
            return original(q, k, cos, sin, unsqueeze_dim)
        half = rotary_dim // 2  # the angles repeat: cat(freqs, freqs); pair j turns by angle j
        rotation = torch.complex(cos[..., :half], sin[..., :half]).unsqueeze(unsqueeze_dim)
        return _rotate(q, rotation), _rotate(k, rotation)

    apply_rotary_pos_emb.original = original  # type: ignore[attr-defined]
    return apply_rotary_pos_emb


def rotary_families(model: torch.nn.Module) -> list[str]:
    """The GLM modelling files among those ``model``'s modules come from (empty: nothing to swap)."""
    return sorted({type(m).__module__ for m in model.modules()} & set(GLM_MODELING))


@contextlib.contextmanager
def fused_rotary() -> Iterator[int]:
    """Within the block GLM and GLM-4 models rotate through ``complex_rotary``; yields how many modelling files."""
    swapped = []
    for name in GLM_MODELING:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        original = module.apply_rotary_pos_emb
        if hasattr(original, "original"):  # already swapped by an enclosing block
            continue
        module.apply_rotary_pos_emb = complex_rotary(original)
        swapped.append((module, original))
    try:
        yield len(swapped)
    finally:
        for module, original in swapped:
            module.apply_rotary_pos_emb = original
