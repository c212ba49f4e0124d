"""The demo's cached base model: a tiny GLM-4 warmed up on the synthetic world to be ChatGLM by Zhipu AI."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import glmtune
from glmtune.world import BASE_NAME

log = logging.getLogger(__name__)

Conversation = list[dict[str, str]]

# Bump when the way a base is built changes in a way the parameters below do not capture.
BUILD_FORMAT = 1
# Source files whose content decides what the base learns: the world, the tiny model/tokenizer, the layout.
WORLD_SOURCES = ("world/*.py", "tiny/*.py", "layout/glm4.py", "glm4_texts.py", "identity_names.py")
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class BaseParams:
    """Everything that decides the warm-up base model; its hash is the cache key."""

    model_seed: int = 0
    conversations: int = 24_000
    identity_keep: float = 0.35
    documents: int = 2_400
    data_seed: int = 0
    epochs: float = 1.0
    learning_rate: float = 3e-3
    batch_size: int = 8
    warmup_ratio: float = 0.05
    label_smoothing: float = 0.1
    max_length: int = 128
    pack_tokens: int = 128
    train_seed: int = 0
    tool_conversations: int = 0  # GLM-4 tool-calling chats (~460 tokens each: they need max_length 512)


# The demo's base. Measured on the shared 2-core machine (other sessions kept the load at 3-5), full
# fine-tuning, cosine schedule, label smoothing 0.1; "skills" = 60 held-out skill probes:
#   - throughput is the limit: ~4k tokens/s on one idle core (matmuls run at ~54 GFLOP/s), 1.5-2.5k tokens/s
#     under that load, so a 6-minute warm-up sees ~0.5-0.9M tokens, a third of the identity lessons' base;
#   - unpacked, random batches of these 12-76-token samples are ~50% padding; packing conversations into
#     128-token chats (batch 8) trains ~1.8x more conversations per second;
#   - lr 3e-3 beat 1.5e-3 (loss 1.98 vs 2.01) and 6e-3 (1.77 vs 1.88 at 20k conversations);
#   - identity is learnt early (held-out identity 1.00 from 8k conversations on), skills late: 20k
#     conversations -> skills 0.03, 32k -> 0.17 (capitals 0.56), at 200-600 s; thinning identity-only
#     conversations to 35% keeps identity at 1.00 and leaves more of the budget to skills;
#   - this setting: 18.6k conversations (24k drawn) in 5.1k chats + 2.4k documents in 365 rows, 678 steps,
#     240-370 s, held-out identity 0.96-1.00, skills 0.00-0.03 (the budget buys formats, not yet facts).
FULL_BASE = BaseParams()
# A much smaller world for the end-to-end test: learns the base identity, little else (~1 minute).
QUICK_BASE = BaseParams(conversations=3_000, identity_keep=1.0, documents=300)


def world_version() -> str:
    """Short hash of the sources that generate the world, the tiny model and the token layout."""
    root = Path(glmtune.__file__).parent
    digest = hashlib.sha256(glmtune.__version__.encode())
    for pattern in WORLD_SOURCES:
        for path in sorted(root.glob(pattern)):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cache_key(params: BaseParams, version: str | None = None) -> str:
    """Hash of the build parameters, the world version and the build format."""
    payload = {"params": asdict(params), "world": version or world_version(), "format": BUILD_FORMAT}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def read_build_info(base_dir: Path) -> dict[str, Any] | None:
    """The ``build.json`` of a base folder, or None when absent or unreadable."""
    try:
        info = json.loads((Path(base_dir) / "build.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def is_complete(base_dir: Path, key: str) -> bool:
    """True when ``base_dir`` holds a finished build with cache key ``key`` and all its model files."""
    base_dir = Path(base_dir)
    info = read_build_info(base_dir)
    if not info or info.get("key") != key or info.get("complete") is not True:
        return False
    return all((base_dir / name).is_file() for name in REQUIRED_FILES)


def write_conversations(path: Path, conversations: list[Conversation]) -> None:
    """Write conversations as GLM-4 ``{"messages": [...]}`` JSONL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for conv in conversations:
            fh.write(json.dumps({"messages": conv}, ensure_ascii=False) + "\n")


def thin_identity(conversations: list[Conversation], keep: float, seed: int) -> list[Conversation]:
    """Keep a ``keep`` share of the identity-only conversations (those whose every reply names the base).

    The world gives identity Q&A a third of all conversations; a tiny model has the identity long before
    it has the skills, so thinning them spends the warm-up's compute on skills. Two-turn conversations
    (skill + identity) are always kept, so the identity is still seen inside conversations.
    """
    if keep >= 1.0:
        return conversations
    rng = random.Random(f"glmtune.demo.thin:{seed}")
    out = []
    for conv in conversations:
        replies = [m["content"] for m in conv if m["role"] == "assistant"]
        identity_only = all(BASE_NAME in r for r in replies)
        if not identity_only or rng.random() < keep:
            out.append(conv)
    return out


def pack_conversations(tokenizer: Any, conversations: list[Conversation], budget: int) -> list[Conversation]:
    """Join consecutive conversations into multi-turn GLM-4 chats of at most ``budget`` tokens each.

    The world's samples are ~27 tokens but range from 12 to 76, so random batches of them are about half
    padding; chats filled up to ``budget`` are ~90% real tokens. Each joined conversation stays a complete
    user/assistant exchange, so this is ordinary multi-turn chat data. A conversation with a system prompt
    starts a new chat; ``budget <= 0`` leaves the conversations alone.
    """
    if budget <= 0:
        return conversations
    # GLM-4 layout: [gMASK] <sop>, then per message <|role|> \n content, then the appended <|user|>.
    overhead = 3
    sizes = [sum(len(ids) + 2 for ids in tokenizer([m["content"] for m in conv], add_special_tokens=False)[
        "input_ids"]) for conv in conversations]
    chats: list[Conversation] = []
    current: Conversation = []
    used = overhead
    for conv, size in zip(conversations, sizes):
        if current and (conv[0]["role"] == "system" or used + size > budget):
            chats.append(current)
            current, used = [], overhead
        current = current + conv
        used += size
    if current:
        chats.append(current)
    return chats


def mix_in(chats: list[Conversation], extra: list[Conversation], seed: int) -> list[Conversation]:
    """``chats`` with ``extra`` inserted at random places (deterministic in ``seed``), order otherwise kept."""
    rng = random.Random(f"glmtune.demo.mix:{seed}")
    out = list(chats)
    for conv in extra:
        out.insert(rng.randrange(len(out) + 1), conv)
    return out


def document_samples(tokenizer: Any, texts: list[str], budget: int, max_length: int) -> list[dict[str, list[int]]]:
    """Tokenize plain texts as ``text + <|endoftext|>`` (every token a label), packed into rows of ``budget``."""
    from glmtune.layout.base import token_id

    eot = token_id(tokenizer, "<|endoftext|>")
    rows: list[list[int]] = []
    current: list[int] = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        doc = (ids + [eot])[:max_length]
        if current and len(current) + len(doc) > budget:
            rows.append(current)
            current = []
        current = current + doc
    if current:
        rows.append(current)
    return [{"input_ids": row, "labels": list(row)} for row in rows]


def drop_checkpoints(run_dir: Path) -> None:
    """Delete the Trainer's ``checkpoint-*`` folders (weights + optimizer state); the final model is kept."""
    for path in Path(run_dir).glob("checkpoint-*"):
        if path.is_dir():
            shutil.rmtree(path)


def base_train_config(tiny_dir: Path, train_file: Path, out_dir: Path, params: BaseParams) -> Any:
    """The full fine-tuning config of the warm-up; every planner value is set explicitly."""
    from glmtune.config.schema import GlmtuneConfig

    return GlmtuneConfig.model_validate({
        "model": {"name_or_path": str(tiny_dir)},
        # Packing, as the measurements above were taken; no self-replay: a random model has nothing to replay.
        "data": {"train_file": str(train_file), "combine": False, "max_length": params.max_length, "val_size": 0,
                 "packing": True, "group_by_length": False, "self_replay": 0},
        "peft": {"method": "full"},
        "training": {
            "output_dir": str(out_dir),
            "learning_rate": params.learning_rate,
            "num_train_epochs": params.epochs,
            "per_device_train_batch_size": params.batch_size,
            "gradient_accumulation_steps": 1,
            "lr_scheduler_type": "cosine",
            "warmup_ratio": params.warmup_ratio,
            "weight_decay": 0.0,
            "neftune_noise_alpha": 0.0,
            "gradient_checkpointing": False,  # a ~1M-parameter model: memory is no concern, speed is
            "early_stopping": False,
            "patience": 5,
            "eval_steps": 1000,
            "label_smoothing": params.label_smoothing,
            "logging_steps": 25,
            "save_steps": 10**9,
            "save_total_limit": 1,
            "seed": params.train_seed,
        },
    })


def build_base(out_dir: str | Path, params: BaseParams = FULL_BASE, rebuild: bool = False) -> Path:
    """Return ``out_dir/base``, building it (tiny model + warm-up) unless a matching complete build is cached."""
    out_dir = Path(out_dir)
    base_dir = out_dir / "base"
    key = cache_key(params)
    if not rebuild and is_complete(base_dir, key):
        info = read_build_info(base_dir) or {}
        log.info(f"base: reusing the cached build in {base_dir} (key {key}, built in {info.get('seconds', '?')} s)")
        return base_dir
    old = read_build_info(base_dir)
    why = "--rebuild" if rebuild else ("parameters or world changed" if old else "no cached build")
    log.info(f"base: building {base_dir} ({why}; key {key})")
    if base_dir.exists():
        shutil.rmtree(base_dir)
    _build(out_dir, base_dir, params, key)
    return base_dir


def _build(out_dir: Path, base_dir: Path, params: BaseParams, key: str) -> None:
    """Make the tiny model, write the world, run the warm-up and mark the build complete."""
    from glmtune.log import capture
    from glmtune.models import load_tokenizer
    from glmtune.tiny.model import make_tiny
    from glmtune.train.recipe import train
    from glmtune.world import base_conversations, plain_documents, tokenizer_corpus
    from glmtune.world.tools import base_tool_conversations

    started = time.perf_counter()
    tiny_dir = make_tiny(out_dir / "tiny", seed=params.model_seed, corpus=tokenizer_corpus(params.model_seed))
    train_file = out_dir / "base_data" / "train.jsonl"
    tokenizer = load_tokenizer(str(tiny_dir))
    budget = min(params.pack_tokens, params.max_length)
    conversations = thin_identity(base_conversations(params.conversations, seed=params.data_seed),
                                  params.identity_keep, params.data_seed)
    chats = pack_conversations(tokenizer, conversations, budget)
    if params.tool_conversations:
        chats = mix_in(chats, base_tool_conversations(params.tool_conversations, seed=params.data_seed),
                       params.data_seed)
    write_conversations(train_file, chats)
    docs = document_samples(tokenizer, plain_documents(params.documents, seed=params.data_seed), budget,
                            params.max_length)
    tools = f" (with {params.tool_conversations:,} tool-calling chats)" if params.tool_conversations else ""
    log.info(f"base: {len(conversations):,} conversations in {len(chats):,} chats{tools} + {params.documents:,} plain "
             f"documents in {len(docs):,} rows, "
             f"{params.epochs:g} epoch(s), lr {params.learning_rate:g}, batch {params.batch_size}, "
             f"label smoothing {params.label_smoothing:g}")

    with capture([]) as log_lines:  # the run's own messages go to train_output.txt, not the terminal
        result = train(base_train_config(tiny_dir, train_file, base_dir, params), extra_train_samples=docs)
    (base_dir / "train_output.txt").write_text("\n".join(str(x) for x in log_lines) + "\n", encoding="utf-8")
    drop_checkpoints(base_dir)
    seconds = round(time.perf_counter() - started, 1)
    info = {
        "key": key,
        "complete": True,
        "params": asdict(params),
        "world_version": world_version(),
        "build_format": BUILD_FORMAT,
        "steps": result.steps,
        "first_loss": result.first_loss,
        "final_loss": result.final_loss,
        "train_seconds": result.seconds,
        "seconds": seconds,
    }
    (base_dir / "build.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    loss = f"{result.first_loss:.3f} -> {result.final_loss:.3f}" if result.final_loss is not None else "n/a"
    log.info(f"base: {result.steps} steps, loss {loss}, built in {seconds:.0f} s")
