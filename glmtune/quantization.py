"""QLoRA through bitsandbytes: the quantization config, checks that name ``model.quantization``, and how a
quantized base is recognised (so that export merges into an unquantised one).

``4bit`` is NF4 with double quantisation and a bf16 compute dtype (fp32 when the run trains in fp32, as on a
CPU); ``8bit`` is LLM.int8. bitsandbytes is an optional extra (``pip install 'glmtune[qlora]'``); recent releases
(0.50 here) run 4-bit and 8-bit layers on x86 CPUs too, slowly but well enough for tests.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from glmtune.config.loader import ConfigError
from glmtune.errors import UserError

KEY = "model.quantization"
INSTALL = "pip install 'glmtune[qlora]'"


def bitsandbytes_installed() -> bool:
    """Whether bitsandbytes can be imported (checked without importing it)."""
    return importlib.util.find_spec("bitsandbytes") is not None


def check_quantization(quantization: str, method: str) -> None:
    """Refuse, naming the key, a quantized base for a method other than LoRA or without bitsandbytes installed."""
    if quantization == "none":
        return
    if method != "lora":
        raise ConfigError(f"{KEY}: {quantization} trains LoRA adapters on a frozen quantized base (QLoRA); "
                          f"peft.method is {method}: set peft.method: lora, or {KEY}: none")
    if not bitsandbytes_installed():
        raise UserError(f"{KEY}: {quantization} needs bitsandbytes, which is not installed: {INSTALL}")


def check_backend(quantization: str) -> None:
    """Quantize a small matrix on this machine's device; refuse, naming the key, where bitsandbytes cannot run."""
    if quantization == "none":
        return
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        import bitsandbytes.functional as bnb_f

        probe = torch.randn(64, 64, device=device)
        if quantization == "4bit":
            bnb_f.quantize_4bit(probe, quant_type="nf4")
        else:
            bnb_f.int8_vectorwise_quant(probe.half() if device == "cuda" else probe)
    except Exception as exc:  # noqa: BLE001 - any failure means this backend cannot quantize
        where = "this GPU" if device == "cuda" else "this CPU (no CUDA device, and no working CPU backend)"
        raise UserError(f"{KEY}: {quantization}: bitsandbytes cannot run on {where}: "
                        f"{type(exc).__name__}: {str(exc)[:300]}. Use a CUDA GPU, a bitsandbytes with a CPU backend "
                        f"(0.50 runs on x86), or {KEY}: none") from None


def bnb_config(quantization: str, compute_dtype: Any) -> Any:
    """transformers' ``BitsAndBytesConfig``: NF4 + double quantisation + ``compute_dtype`` for 4bit, LLM.int8 for 8bit."""
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=compute_dtype)
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    raise ValueError(f"{KEY}: unknown value {quantization!r}")


def load_kwargs(quantization: str, compute_dtype: Any) -> dict[str, Any]:
    """Extra ``from_pretrained`` arguments: the quantization config, and on a GPU this process's device (the
    weights are quantized as they load onto it)."""
    if quantization == "none":
        return {}
    import torch

    kwargs: dict[str, Any] = {"quantization_config": bnb_config(quantization, compute_dtype)}
    if torch.cuda.is_available():
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    return kwargs


def is_quantized(model: Any) -> bool:
    """Whether ``model`` holds quantized weights (loaded in 4 or 8 bits, or from a quantized checkpoint)."""
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)
                or getattr(model, "hf_quantizer", None) is not None)


def prepare_for_training(model: Any) -> Any:
    """``peft.prepare_model_for_kbit_training`` without its checkpointing (glmtune turns that on itself): freezes
    the base and upcasts its non-quantized parameters (norms, embeddings, output layer) to fp32."""
    from peft import prepare_model_for_kbit_training

    keep_trainable_layout(model)
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def keep_trainable_layout(model: Any) -> int:
    """Undo and switch off bitsandbytes' CPU inference layout of 4-bit weights; returns the layers undone.

    On a CPU with AVX512-BF16, an eval-mode forward without gradients (drafting self-replay answers, evaluation)
    repacks a ``Linear4bit`` weight for a faster kernel, and the repacked weight stays; its matmul then adds the bias
    in place, which fails as soon as a training forward needs gradients (bitsandbytes 0.50).
    """
    try:
        from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse
        from bitsandbytes.nn import Linear4bit
    except ImportError:  # no bitsandbytes, or one without the CPU layout: nothing to undo
        return 0
    undone = 0
    for module in model.modules():
        if not isinstance(module, Linear4bit):
            continue
        module.support_avx512bf16_for_cpu = False
        state = getattr(module.weight, "quant_state", None)
        if state is not None and getattr(state, "packing_format_for_cpu", False):
            module.weight.data, module.weight.quant_state = _convert_weight_packed_for_cpu_inverse(
                module.weight.data, state)
            undone += 1
    return undone


def checkpoint_quantization(path: str) -> str | None:
    """The quantization a local checkpoint's ``config.json`` declares (e.g. ``bitsandbytes 4bit``), else None."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return None
    try:
        quant = json.loads(config.read_text(encoding="utf-8")).get("quantization_config")
    except (OSError, ValueError):
        return None
    if not isinstance(quant, dict):
        return None
    bits = "4bit" if quant.get("load_in_4bit") else "8bit" if quant.get("load_in_8bit") else ""
    return " ".join(p for p in (str(quant.get("quant_method", "quantized")), bits) if p)


def trained_quantization(adapter: str) -> str:
    """``model.quantization`` of the run that wrote ``adapter`` (its config.yaml), ``none`` when unknown."""
    config = Path(adapter) / "config.yaml"
    if not config.is_file():
        return "none"
    import yaml

    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return "none"
    return str((data.get("model") or {}).get("quantization") or "none")
