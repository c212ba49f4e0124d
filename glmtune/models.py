"""Load tokenizers, base models and adapters from a local folder or the hub, with clear errors."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from glmtune.model_paths import ModelLoadError, check_model_path

__all__ = ["ModelLoadError", "check_model_path", "keep_lora_targets", "load_model", "load_tokenizer",
           "load_tokenizer_for", "quiet_peft"]


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """Silence transformers' rename warning that peft triggers by reading ``is_gradient_checkpointing``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        yield


@contextlib.contextmanager
def keep_lora_targets() -> Iterator[None]:
    """Keep dotted LoRA ``target_modules`` that name modules of the model, where PEFT 0.21 would rewrite them.

    To load adapters trained on transformers v4 MoE layouts, PEFT turns every target ending in ``gate_proj``,
    ``up_proj`` or ``down_proj`` of such a model (GLM-4.5's among them) into the routed experts' fused parameters, so
    the dense layers' and shared experts' projections (``mlp.gate_proj``, ``shared_experts.gate_proj``) would lose
    their adapters (huggingface/peft#3711). Inside this block a dotted target that names a module of the model is
    kept as that module; bare names and everything else still go through PEFT's conversion.
    """
    try:
        from peft.utils import transformers_weight_conversion as conversion
    except ImportError:  # a PEFT without the conversion: nothing to undo
        yield
        return
    original = conversion.convert_peft_config_for_transformers

    def convert(peft_config: Any, model: Any, conversions: Any) -> None:
        targets = getattr(peft_config, "target_modules", None)
        if not targets or isinstance(targets, str):
            original(peft_config, model, conversions)
            return
        names = [name for name, _ in model.named_modules()]
        kept = {t for t in targets if "." in t and any(n == t or n.endswith(f".{t}") for n in names)}
        peft_config.target_modules = set(targets) - kept
        original(peft_config, model, conversions)
        peft_config.target_modules = set(peft_config.target_modules or ()) | kept

    conversion.convert_peft_config_for_transformers = convert
    try:
        yield
    finally:
        conversion.convert_peft_config_for_transformers = original


def load_tokenizer(name: str, trust_remote_code: bool = False) -> Any:
    """Load the tokenizer that carries the chat template."""
    from transformers import AutoTokenizer

    check_model_path(name, "tokenizer")
    try:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load the tokenizer from {name}: {exc}") from None


def load_tokenizer_for(model: str, adapter: str | None = None) -> Any:
    """The adapter's own tokenizer when it saved one (its chat template may differ), else the model's."""
    if adapter and Path(adapter, "tokenizer_config.json").is_file():
        return load_tokenizer(adapter)
    return load_tokenizer(model)


def load_model(
    name: str,
    adapter: str | None = None,
    dtype: torch.dtype = torch.float32,
    trust_remote_code: bool = False,
    attn_implementation: str = "sdpa",
    quantization: str = "none",
) -> Any:
    """Load a causal LM, optionally quantized by bitsandbytes (``4bit``/``8bit``, computing in ``dtype``) and with a
    PEFT adapter on top, in eval mode."""
    from transformers import AutoModelForCausalLM

    from glmtune.quantization import check_backend, load_kwargs

    check_model_path(name)
    check_backend(quantization)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            name, dtype=dtype, trust_remote_code=trust_remote_code, attn_implementation=attn_implementation,
            **load_kwargs(quantization, dtype),
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load the model from {name}: {exc}") from None
    if adapter:
        from peft import PeftModel

        check_model_path(adapter, "adapter")
        try:
            with quiet_peft(), keep_lora_targets():
                model = PeftModel.from_pretrained(model, adapter)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"cannot load the adapter from {adapter}: {exc}") from None
    model.eval()
    return model
