"""Write a tiny, randomly initialised chat model of a real architecture and its tokenizer to a folder."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import AddedToken
from transformers import GenerationConfig, PreTrainedTokenizerFast

from glmtune.tiny.families import FAMILY_NAMES, TinyFamily, get_family
from glmtune.tiny.tokenizer import train_bpe

TINY_SHAPE = {
    "hidden_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "intermediate_size": 384,
}
# The MoE families' experts: 4 routed (2 chosen per token) and 1 shared, after one dense layer, one expert group.
TINY_MOE = {
    "n_routed_experts": 4,
    "num_experts_per_tok": 2,
    "n_shared_experts": 1,
    "moe_intermediate_size": 64,
    "first_k_dense_replace": 1,
    "n_group": 1,
    "topk_group": 1,
}
CLASS_SHAPES: dict[str, dict[str, int]] = {"Glm4MoeConfig": TINY_MOE}  # beyond TINY_SHAPE, by config class

__all__ = ["FAMILY_NAMES", "TINY_MOE", "TINY_SHAPE", "family_tokenizer", "make_tiny"]


def family_tokenizer(
    family: TinyFamily, corpus: Iterable[str], vocab_size: int = 3000
) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on ``corpus`` with ``family``'s token strings, eos/pad/bos, chat template."""
    raw = train_bpe(corpus, vocab_size, list(family.special_tokens))
    if family.added_tokens:
        raw.add_tokens([AddedToken(t, special=False, normalized=False) for t in family.added_tokens])
    named = {family.eos, family.pad, family.bos}
    extra: dict[str, object] = {"bos_token": family.bos, "add_bos_token": True} if family.add_bos else {}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        eos_token=family.eos,
        pad_token=family.pad,
        additional_special_tokens=[t for t in family.special_tokens if t not in named],
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=131072,
        **extra,
    )
    tokenizer.chat_template = family.template
    return tokenizer


def make_tiny(
    out: str | Path, seed: int = 0, vocab_size: int = 3000, family: str | TinyFamily = "glm4", *,
    corpus: Iterable[str]
) -> Path:
    """Write tokenizer + tiny ``family`` model (~1.1 M parameters) to ``out``, deterministic for ``seed``.

    MoE architectures (glm4-moe's Glm4MoeForCausalLM) add ``TINY_MOE``'s experts to the same shape.

    The byte-level BPE is trained on ``corpus``. The tiny models the CLI, the demo, the tests and the benchmarks
    build use ``glmtune.world.tokenizer_corpus(seed)``; tiny/ takes the texts as an argument so that it does not
    depend on the synthetic world.
    """
    fam = family if isinstance(family, TinyFamily) else get_family(family)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = family_tokenizer(fam, corpus, vocab_size=vocab_size)
    stop_ids = [tokenizer.convert_tokens_to_ids(t) for t in fam.stop]
    config_class, model_class = fam.classes()
    bos = {"bos_token_id": tokenizer.bos_token_id} if fam.bos else {}
    shape = {**TINY_SHAPE, **CLASS_SHAPES.get(fam.config_class, {})}
    config = config_class(
        vocab_size=len(tokenizer),
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=stop_ids,
        **bos,
        **shape,
    )
    torch.manual_seed(seed)
    model = model_class(config)
    model.generation_config = GenerationConfig(
        eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id, do_sample=False, max_new_tokens=128,
        **bos,
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    record = {"family": fam.name, "seed": seed, **shape}
    (out / "glmtune_tiny.json").write_text(json.dumps(record, indent=2))
    return out
