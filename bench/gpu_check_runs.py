"""The measurements behind ``python -m bench.gpu_check``: random-init GLM-4 models saved from a config, a few LoRA
training steps under one setting (tokens/s, peak memory, losses, the planner's estimate), and generation speed.

Every setting trains the same LoRA (r 16 on every linear layer, seeded) on the same batches, so their loss curves
must agree (bf16 rounding aside; a 4-bit base shifts them a little). On a CPU the same code runs in fp32 with no
memory numbers, which is what the benchmark's tests use.
"""

from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# A dense GLM-4 (Glm4ForCausalLM) of ~0.5B parameters, 0.3B of them in the 151,552-token embeddings and head
DENSE_SHAPE = {"hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 16, "num_attention_heads": 16,
               "num_key_value_heads": 2, "head_dim": 64, "vocab_size": 151552}
# A small GLM-4.5-style MoE (Glm4MoeForCausalLM): 16 routed experts, 4 per token, one shared, one dense layer first
MOE_SHAPE = {"hidden_size": 512, "intermediate_size": 1536, "moe_intermediate_size": 256, "num_hidden_layers": 6,
             "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 64, "vocab_size": 32000,
             "n_routed_experts": 16, "num_experts_per_tok": 4, "n_shared_experts": 1, "first_k_dense_replace": 1,
             "n_group": 1, "topk_group": 1}
LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0}
PROMPT_SHARE = 0.25  # leading share of every row masked out of the loss, as a prompt would be


@dataclass(frozen=True)
class Setting:
    """How one row trains: the loss head, activation checkpointing, the base's quantization and kernels."""

    name: str
    chunked: bool = True  # glmtune's chunked loss, else transformers' full logits
    checkpointing: bool | str = False
    quantization: str = "none"
    liger: bool = False
    compile: bool = False
    plain: bool = False  # transformers + PEFT as documented, nothing of glmtune's


def build_model(out: Path, kind: str, shape: dict[str, int], device: str) -> Path:
    """Save a random-init model of ``shape`` (bf16 on a GPU) with glmtune's tiny tokenizer; reuse it when saved."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, Glm4MoeConfig

    from glmtune.tiny.model import make_tiny
    from glmtune.world import tokenizer_corpus

    target = out / kind
    if (target / "config.json").exists():
        return target
    tiny = out / "tiny"
    if not (tiny / "config.json").exists():
        make_tiny(tiny, seed=0, corpus=tokenizer_corpus(0))
    base = AutoConfig.from_pretrained(tiny)
    ids = {k: getattr(base, k) for k in ("eos_token_id", "pad_token_id", "bos_token_id")}
    config = Glm4MoeConfig(**shape, **ids) if "n_routed_experts" in shape else base
    for key, value in shape.items():
        setattr(config, key, value)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config)
    model.to(torch.bfloat16 if device == "cuda" else torch.float32).save_pretrained(target)
    AutoTokenizer.from_pretrained(tiny).save_pretrained(target)
    del model
    return target


def make_batches(vocab: int, steps: int, micro: int, length: int, seed: int = 1) -> list[tuple[Any, Any]]:
    """``steps`` random ``(input_ids, labels)`` batches; each row's first quarter is a prompt (label -100)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(steps):
        ids = torch.randint(10, vocab - 10, (micro, length), generator=gen)
        labels = ids.clone()
        labels[:, : int(length * PROMPT_SHARE)] = -100
        batches.append((ids, labels))
    return batches


def adapt(model: Any) -> Any:
    """LoRA on every linear layer (never an MoE router), seeded so every setting starts from the same adapter."""
    import torch
    from peft import LoraConfig, get_peft_model

    from glmtune.models import keep_lora_targets
    from glmtune.train.moe import lora_targets, moe_shape

    modules: Any = "all-linear"
    if (moe := moe_shape(model, model.config)) is not None:
        modules, _ = lora_targets("all-linear", moe, False)
    torch.manual_seed(0)
    with keep_lora_targets():
        return get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", target_modules=modules, **LORA))


def load_for(setting: Setting, model_dir: Path, device: str) -> Any:
    """The base model as glmtune would train it under ``setting``, adapted with LoRA, on ``device``."""
    import torch

    from glmtune.models import load_model
    from glmtune.quantization import prepare_for_training
    from glmtune.train.activation_checkpointing import enable_checkpointing

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = load_model(str(model_dir), dtype=dtype, quantization=setting.quantization)
    if setting.quantization == "none":
        model.to(device)
    model.train()
    model.config.use_cache = False
    if setting.liger:
        from glmtune.train.gpu_options import apply_liger_kernels

        apply_liger_kernels(model)
    if not setting.plain:
        enable_checkpointing(model, setting.checkpointing)
    if setting.quantization != "none":
        model = prepare_for_training(model)
    return adapt(model)


def loss_of(model: Any, forward: Any, ids: Any, labels: Any, setting: Setting) -> Any:
    """The step's loss: transformers' own (full logits) or glmtune's chunked loss from the final hidden states."""
    if not setting.chunked:
        return forward(input_ids=ids, labels=labels).loss
    from glmtune.train.chunked_loss import chunked_lm_loss, output_head

    out = forward(input_ids=ids, output_hidden_states=True, logits_to_keep=1)
    return chunked_lm_loss(out.hidden_states[-1], labels, output_head(model)).ce


def train_run(setting: Setting, model_dir: Path, batches: list[tuple[Any, Any]], device: str = "cuda",
              warmup: int = 2) -> dict[str, Any]:
    """Train ``len(batches)`` steps under ``setting``: tokens/s after ``warmup`` steps, peak memory, losses, and
    the planner's estimate for the same run."""
    import torch

    cuda = device == "cuda"
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    row: dict[str, Any] = asdict(setting)
    try:
        model = load_for(setting, model_dir, device)
        forward = torch.compile(model) if setting.compile else model
        trainable = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(trainable, lr=1e-4)
        losses, began = [], time.perf_counter()
        for i, (ids, labels) in enumerate(batches):
            if i == warmup:
                torch.cuda.synchronize() if cuda else None
                began = time.perf_counter()
            with torch.autocast(device, dtype=torch.bfloat16, enabled=cuda):
                loss = loss_of(model, forward, ids.to(device), labels.to(device), setting)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
        torch.cuda.synchronize() if cuda else None
        seconds = time.perf_counter() - began
        micro, length = batches[0][0].shape
        timed = max(1, len(batches) - warmup)
        row.update(losses=losses, step_s=seconds / timed, tokens_per_s=timed * micro * length / seconds,
                   peak_bytes=torch.cuda.max_memory_allocated() if cuda else 0,
                   trainable=sum(p.numel() for p in trainable))
        row["estimate"] = planner_estimate(setting, model_dir, row["trainable"], micro, length, cuda)
        del model, forward, opt, trainable
    except Exception as exc:  # noqa: BLE001 - a failing setting is a result, the others still run
        row["error"] = f"{type(exc).__name__}: {str(exc)[:500]}"
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
    return row


def planner_estimate(setting: Setting, model_dir: Path, trainable: int, micro: int, length: int,
                     bf16: bool) -> dict[str, int]:
    """glmtune.train.memory's estimate of the same run (bytes per term and the total)."""
    from transformers import AutoConfig

    from glmtune.train.chunked_loss import LOSS_CHUNK_TOKENS
    from glmtune.train.memory import MemorySetup, estimate_memory
    from glmtune.train.plan_inputs import shape_from_config

    shape = shape_from_config(AutoConfig.from_pretrained(model_dir))
    setup = MemorySetup(shape, "lora", trainable, bf16, setting.quantization, micro, length,
                        setting.checkpointing if not setting.plain else False,
                        LOSS_CHUNK_TOKENS if setting.chunked else 0)
    return estimate_memory(setup).as_dict()


def planned_defaults(model_dir: Path, micro: int, length: int, device_memory: int) -> dict[str, Any]:
    """What glmtune's planner picks for this model, a micro-batch of ``micro`` x ``length`` and this GPU."""
    from glmtune.config.loader import validate_config
    from glmtune.train.plan import DataStats, make_plan
    from glmtune.train.plan_inputs import model_shape

    shape = model_shape(str(model_dir))
    trained = int(length * (1 - PROMPT_SHARE))
    config = validate_config({"model": {"name_or_path": str(model_dir)},
                              "data": {"train_file": "unused.jsonl", "max_length": length},
                              "training": {"per_device_train_batch_size": micro},
                              "peft": {"lora": {"target_modules": "all-linear", "r": LORA["r"]}}})
    plan = make_plan(config, DataStats(5000, 5000 * trained, 5000 * length, length, [length] * 5000), shape.params,
                     False, shape=shape, device_memory=device_memory, bf16=device_memory > 0)
    values = {item.key: item.value for item in plan.items}
    return {"chunked": bool(values["training.chunked_loss"]),
            "checkpointing": values["training.gradient_checkpointing"], "params": shape.params,
            "memory_estimate": plan.memory.as_dict() if plan.memory else None}


def generation_speed(model_dir: Path, out: Path, prompts: int = 32, max_new_tokens: int = 128,
                     batch_size: int = 16) -> dict[str, Any]:
    """``glmtune predict``'s path (predict_file) on ``prompts`` one-turn questions: generated tokens per second."""
    import json

    from glmtune.infer.predict import predict_file

    data = out / "prompts.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Question {i}: tell me about the "
                                                      f"number {i * 37}."}]}) + "\n" for i in range(prompts)))
    began = time.perf_counter()
    rows = predict_file(str(model_dir), str(data), str(out / "predictions.jsonl"), max_new_tokens=max_new_tokens,
                        batch_size=batch_size)
    seconds = time.perf_counter() - began
    tokens = sum(r["num_tokens"] for r in rows)
    return {"prompts": prompts, "batch_size": batch_size, "max_new_tokens": max_new_tokens, "tokens": tokens,
            "seconds": seconds, "tokens_per_s": tokens / seconds}
