"""Two processes on CPU (torchrun or accelerate launch, gloo/DDP) follow the same loss curve as one process with the same
global batch and seed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_jsonl

TOLERANCE = 1e-4  # measured: at most 2e-6 apart on the 2-core CI kind


def losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r and "epoch" in r]


def write_config(tmp_path: Path, tiny_model: Path) -> Path:
    """The shared run: 24 samples, LoRA on every linear layer, 10 steps, a loss logged at every step, with the base
    anchor set (the planner would drop it for this untrained model), so its adapter-free pass runs under DDP too."""
    rows = [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"answer number {i}"}]
            for i in range(24)]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"model:\n  name_or_path: {tiny_model}\ndata:\n  train_file: {data}\n  max_length: 64\n  val_size: 0\n"
        "peft:\n  lora:\n    r: 4\n    alpha: 8\n    dropout: 0.0\n    target_modules: all-linear\n"
        "training:\n  max_steps: 10\n  learning_rate: 5.0e-3\n  logging_steps: 1\n  early_stopping: false\n"
        "  base_anchor: 1.0\n"
        "  report_to: []\n"
    )
    return cfg


@pytest.fixture(scope="module")
def single_run(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> tuple[Path, Path]:
    """One process with micro-batch 4: the reference curve (config, run folder)."""
    tmp = tmp_path_factory.mktemp("single")
    cfg = write_config(tmp, tiny_model)
    single = subprocess.run([sys.executable, "-m", "glmtune", "train", str(cfg), f"training.output_dir={tmp / 'one'}",
                             "training.per_device_train_batch_size=4"],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert single.returncode == 0, single.stderr[-3000:]
    return cfg, tmp / "one"


LAUNCHERS = {
    "torchrun": ["torchrun", "--nproc_per_node", "2"],
    # two processes over gloo on a CPU-only machine: `--multi_gpu` picks the torch.distributed launcher (it
    # falls back to CPU/gloo without GPUs); `--cpu --num_processes 2` would silently start ONE process
    "accelerate": ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                   "--mixed_precision", "no", "--dynamo_backend", "no"],
}


@pytest.mark.slow
@pytest.mark.parametrize("launcher, checkpointing", [("accelerate", "false"), ("torchrun", "selective")])
def test_two_process_run_matches_single_process(tmp_path, single_run, launcher, checkpointing):
    """DDP over gloo follows the single-process curve; selective checkpointing under DDP changes nothing either."""
    if shutil.which(LAUNCHERS[launcher][0]) is None:
        pytest.skip(f"{LAUNCHERS[launcher][0]} is not on PATH")
    cfg, one = single_run
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run([*LAUNCHERS[launcher], "-m", "glmtune", "train", str(cfg),
                          f"training.output_dir={tmp_path / 'ddp'}", "training.per_device_train_batch_size=2",
                          f"training.gradient_checkpointing={checkpointing}"],
                         capture_output=True, text=True, timeout=600, env=env)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a, b = losses(tmp_path / "ddp"), losses(one)
    assert len(a) == len(b) == 10
    assert max(abs(x - y) for x, y in zip(a, b)) < TOLERANCE
    assert ddp.stdout.count("saved adapter") == 1  # only rank 0 reports and writes
    per_step = [json.loads(line)["loss"] for line in (tmp_path / "ddp" / "steps.jsonl").read_text().splitlines()]
    assert max(abs(x - y) for x, y in zip(per_step, a)) < TOLERANCE and len(per_step) == 10  # averaged over ranks
    assert (tmp_path / "ddp" / "adapter_model.safetensors").is_file()
