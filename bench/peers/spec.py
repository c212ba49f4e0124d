"""What a peer run is asked to do (``PeerSpec``) and what it measured (``PeerResult``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class PeerSpec:
    """One LoRA SFT run, stated the same way for every peer."""

    model_dir: str
    train_jsonl: str  # GLM-4 messages JSONL, as glmtune reads it
    out_dir: str
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    target_modules: list[str] | str = "all"  # a list of module names, or "all" (every linear layer)
    learning_rate: float = 5e-4
    num_epochs: float = 1.0
    max_steps: int | None = None  # wins over num_epochs when set
    per_device_batch: int = 1
    grad_accum: int = 1
    max_length: int = 1025
    seed: int = 42
    scheduler: str = "linear"
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0
    bf16: bool | None = None  # None: bf16 when a bf16-capable GPU is used, else fp32
    device: str = "auto"  # "cpu" hides GPUs from the peer; "auto" lets it use one
    logging_steps: int = 1
    extra: dict[str, Any] = field(default_factory=dict)  # peer-specific overrides, applied last


@dataclass
class PeerResult:
    """What a peer run produced and measured."""

    peer: str
    adapter_dir: str  # a PEFT LoRA adapter for the same base
    wall_s: float  # the whole child process: imports, data processing, model load, training, saving
    train_s: float | None  # the Trainer's own train_runtime (the training loop only)
    peak_rss_mb: float  # sum over the child process tree, sampled every 0.1 s
    losses: list[tuple[int, float]]  # (step, loss) from the peer's own trainer log
    trained_tokens: int  # label tokens that entered the loss, counted in Trainer.training_step for every peer
    input_tokens: int  # non-padding input tokens processed in training steps, counted the same way
    steps: int
    returncode: int
    log_path: str
    skipped: list[dict[str, Any]] = field(default_factory=list)  # conversations the peer's format cannot express
    cuda_peak_mb: float | None = None  # torch.cuda.max_memory_allocated in the child, when it used a GPU

    @property
    def ok(self) -> bool:
        """True when the peer exited cleanly and saved an adapter."""
        return self.returncode == 0 and (Path(self.adapter_dir) / "adapter_config.json").exists()


def trainer_state_log(output_dir: str | Path) -> tuple[list[tuple[int, float]], float | None, int]:
    """(step, loss) pairs, train_runtime and the final step from a Trainer's ``trainer_state.json``."""
    path = Path(output_dir) / "trainer_state.json"
    if not path.exists():
        return [], None, 0
    state = json.loads(path.read_text())
    history = state.get("log_history", [])
    losses = [(int(r["step"]), float(r["loss"])) for r in history if "loss" in r and "step" in r]
    runtime = next((float(r["train_runtime"]) for r in reversed(history) if "train_runtime" in r), None)
    return losses, runtime, int(state.get("global_step", 0))
