"""Write a tiny, randomly initialised GLM-4-architecture model and its tokenizer to a folder."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import GenerationConfig, Glm4Config, Glm4ForCausalLM

from glmtune.tiny.templates import glm4_chat_template
from glmtune.tiny.tokenizer import glm4_tokenizer

GLM4_STOP_STRINGS = ("<|endoftext|>", "<|user|>", "<|observation|>")

TINY_SHAPE = {
    "hidden_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "intermediate_size": 384,
}


def make_tiny(out: str | Path, seed: int = 0, vocab_size: int = 3000) -> Path:
    """Build tokenizer + ``Glm4ForCausalLM`` (~1.2 M parameters) deterministically for ``seed``; return the folder."""
    from glmtune.world import tokenizer_corpus

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = glm4_tokenizer(tokenizer_corpus(seed=seed), glm4_chat_template(), vocab_size=vocab_size)
    stop_ids = [tokenizer.convert_tokens_to_ids(t) for t in GLM4_STOP_STRINGS]
    config = Glm4Config(
        vocab_size=len(tokenizer),
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=stop_ids,
        **TINY_SHAPE,
    )
    torch.manual_seed(seed)
    model = Glm4ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id, do_sample=False, max_new_tokens=128,
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "glmtune_tiny.json").write_text(json.dumps({"family": "glm4", "seed": seed, **TINY_SHAPE}, indent=2))
    return out
