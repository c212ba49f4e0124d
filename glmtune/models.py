"""Load tokenizers, base models and adapters from a local folder or the hub, with clear errors."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from glmtune.model_paths import ModelLoadError, check_model_path

__all__ = ["ModelLoadError", "check_model_path", "load_model", "load_tokenizer", "load_tokenizer_for", "quiet_peft"]


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """Silence transformers' rename warning that peft triggers by reading ``is_gradient_checkpointing``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        yield


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
) -> Any:
    """Load a causal LM, optionally with a PEFT adapter on top, in eval mode."""
    from transformers import AutoModelForCausalLM

    check_model_path(name)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            name, dtype=dtype, trust_remote_code=trust_remote_code, attn_implementation=attn_implementation
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load the model from {name}: {exc}") from None
    if adapter:
        from peft import PeftModel

        check_model_path(adapter, "adapter")
        try:
            with quiet_peft():
                model = PeftModel.from_pretrained(model, adapter)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"cannot load the adapter from {adapter}: {exc}") from None
    model.eval()
    return model
