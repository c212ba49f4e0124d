"""The four contestants: glmtune's automatic plan, the official recipe, LLaMA-Factory and TRL."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.stability_runs import max_ratio, official_config, read_log, step_losses

CONTESTANTS = ("glmtune", "official", "llamafactory", "trl")

# Each peer runs with its own documented LoRA SFT example settings; only the epoch budget (the same for every
# contestant), the seed and per-step logging are set by the benchmark.
#   LLaMA-Factory examples/train_lora/llama3_lora_sft.yaml: rank 8 on all linear layers, lr 1e-4, cosine,
#   warm-up 0.1, batch 1 x accumulation 8 (alpha defaults to 2 x rank, dropout to 0).
#   TRL's PEFT example (docs "SFTTrainer with LoRA"): r 16, alpha 32, dropout 0.05 on all linear layers,
#   lr 2e-4, SFTConfig's batch 8, linear decay, no warm-up.
PEER_SETTINGS: dict[str, dict[str, Any]] = {
    "llamafactory": {"lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": "all",
                     "learning_rate": 1e-4, "scheduler": "cosine", "warmup_ratio": 0.1, "per_device_batch": 1,
                     "grad_accum": 8, "max_grad_norm": 1.0},
    "trl": {"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all",
            "learning_rate": 2e-4, "scheduler": "linear", "warmup_ratio": 0.0, "per_device_batch": 8,
            "grad_accum": 1, "max_grad_norm": 1.0},
}
MAX_LENGTH = 256


@dataclass
class Trained:
    """A finished fine-tune: where its adapter is and what its training looked like."""

    contestant: str
    adapter_dir: Path
    tokenizer_dir: Path | None  # the tokenizer it deploys with (None: the base model's)
    steps: int
    wall_s: float
    max_spike: float | None
    final_loss: float | None
    notes: list[str] = field(default_factory=list)


def epoch_budget(samples: int, params: int) -> float:
    """The epochs every contestant gets: what glmtune's planner picks for this many samples on this model."""
    from glmtune.train.plan_rules import rule_epochs

    return rule_epochs(samples, params)[0]


def glmtune_config(base: Path, train_file: Path, out_dir: Path, seed: int, name: str, author: str,
                   epochs: float | None = None) -> dict[str, Any]:
    """glmtune's defaults: model, data, the identity the user declares, output folder, seed, per-step logging.

    ``epochs`` replaces the planner's choice only for quick checks (``--epochs``); the benchmark leaves it unset.
    """
    training: dict[str, Any] = {"output_dir": str(out_dir), "seed": seed, "logging_steps": 1, "report_to": []}
    if epochs is not None:
        training["num_train_epochs"] = epochs
    return {"model": {"name_or_path": str(base)}, "data": {"train_file": str(train_file)},
            "identity": {"name": name, "author": author}, "training": training}


def official(base: Path, train_file: Path, out_dir: Path, seed: int, samples: int, epochs: float) -> dict[str, Any]:
    """configs/lora.yaml as it is (batch 1), trained for the shared epoch budget."""
    cfg = official_config(base, train_file, out_dir, seed, max_steps=math.ceil(samples * epochs))
    cfg["training"]["report_to"] = []
    return cfg


def _train_glmtune(label: str, cfg: dict[str, Any]) -> Trained:
    """Train one glmtune config in this process and read its log."""
    from transformers import set_seed

    from glmtune.config.loader import validate_config
    from glmtune.log import capture
    from glmtune.train.recipe import train

    out = Path(cfg["training"]["output_dir"])
    set_seed(int(cfg["training"]["seed"]))  # the adapter is drawn before the Trainer seeds itself
    started = time.perf_counter()
    with capture([]) as lines:  # the run's messages go to train_output.txt
        result = train(validate_config(cfg, source=label), overwrite=True)
    wall = time.perf_counter() - started
    (out / "train_output.txt").write_text("\n".join(map(str, lines)) + "\n", encoding="utf-8")
    losses = step_losses(read_log(out / "log.jsonl"))
    tail = [x for x in losses[-10:] if math.isfinite(x)]
    notes = [str(x) for x in lines if "identity" in str(x) or "left out" in str(x) or "repair" in str(x)]
    return Trained(label, out, out if (out / "tokenizer_config.json").is_file() else None, result.steps,
                   round(wall, 1), max_ratio(losses), sum(tail) / len(tail) if tail else None, notes)


def peer_label(peer: str, lr_scale: float) -> str:
    """The contestant label of ``peer`` at ``lr_scale`` times its documented rate ("trl", "trl-x3", ...)."""
    return peer if lr_scale == 1 else f"{peer}-x{lr_scale:g}"


def split_label(label: str) -> tuple[str, float]:
    """(contestant, lr scale) of a label made by :func:`peer_label`."""
    name, sep, scale = label.partition("-x")
    return (name, float(scale)) if sep else (label, 1.0)


def _train_peer(peer: str, base: Path, train_file: Path, out_dir: Path, seed: int, epochs: float,
                lr_scale: float = 1.0) -> Trained:
    """Train one peer from its own virtualenv through bench.peers (``lr_scale`` x its documented rate)."""
    from bench.peers.run import PeerSpec, run_peer

    settings = dict(PEER_SETTINGS[peer], learning_rate=PEER_SETTINGS[peer]["learning_rate"] * lr_scale)
    spec = PeerSpec(model_dir=str(base.resolve()), train_jsonl=str(train_file.resolve()), out_dir=str(out_dir.resolve()),
                    num_epochs=epochs, max_length=MAX_LENGTH, seed=seed, device="cpu", bf16=False, **settings)
    result = run_peer(peer, spec)
    if result.returncode != 0:
        raise RuntimeError(f"{peer} failed with exit code {result.returncode}; see {result.log_path}")
    losses = [float(loss) for _, loss in result.losses]
    tail = losses[-10:]
    return Trained(peer, Path(result.adapter_dir), None, len(losses), round(result.wall_s, 1), max_ratio(losses),
                   sum(tail) / len(tail) if tail else None)


def apply_overrides(cfg: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """``cfg`` with ``section.key=value`` overrides (values parsed as YAML scalars) set in place."""
    import yaml

    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ValueError(f"--glmtune-set expects section.key=value, got {item!r}")
        *path, last = key.split(".")
        node = cfg
        for part in path:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    return cfg


def train_contestant(contestant: str, base: Path, train_file: Path, out_dir: Path, seed: int, samples: int,
                     epochs: float, name: str, author: str, forced_epochs: bool = False,
                     overrides: list[str] | None = None) -> Trained:
    """Fine-tune ``base`` on ``train_file`` the way ``contestant`` does (a peer label may carry an lr scale)."""
    contestant, lr_scale = split_label(contestant)
    if contestant == "glmtune":
        return _train_glmtune(contestant, apply_overrides(glmtune_config(
            base, train_file, out_dir, seed, name, author, epochs if forced_epochs else None), overrides))
    if contestant == "official":
        return _train_glmtune(contestant, official(base, train_file, out_dir, seed, samples, epochs))
    if contestant in PEER_SETTINGS:
        return _train_peer(contestant, base, train_file, out_dir, seed, epochs, lr_scale)
    raise ValueError(f"unknown contestant {contestant!r}; choose from {', '.join(CONTESTANTS)}")
