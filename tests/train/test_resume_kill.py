"""A run killed with SIGKILL mid-way and resumed gives the same adapter as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import write_jsonl


def config(tmp: Path, model: Path, data: Path, out: Path) -> Path:
    cfg = tmp / f"{out.name}.yaml"
    cfg.write_text(
        f"model:\n  name_or_path: {model}\ndata:\n  train_file: {data}\n  max_length: 64\n"
        "peft:\n  lora:\n    r: 4\n    alpha: 8\n    target_modules: all-linear\n"
        f"training:\n  output_dir: {out}\n  max_steps: 30\n  learning_rate: 5.0e-3\n  save_steps: 10\n"
        "  per_device_train_batch_size: 2\n  logging_steps: 1\n  early_stopping: false\n  save_total_limit: 5\n"
        "  report_to: []\n"
    )
    return cfg


def glmtune(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "glmtune", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tmp_path, tiny_model):
    rows = [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"answer number {i}"}]
            for i in range(24)]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    ref_out, cut_out = tmp_path / "ref", tmp_path / "cut"
    proc = glmtune("train", str(config(tmp_path, tiny_model, data, ref_out)))
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-2000:]

    cfg = config(tmp_path, tiny_model, data, cut_out)
    for kill_after in (12, 23):  # killed twice, at different steps, each after a checkpoint
        proc = glmtune("train", str(cfg), *(["--resume", "auto"] if kill_after == 23 else []))
        log = cut_out / "log.jsonl"
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            steps = [json.loads(line).get("step", 0) for line in log.read_text().splitlines()] if log.exists() else []
            if steps and max(steps) >= kill_after:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    proc = glmtune("train", str(cfg), "--resume", "auto")
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-2000:]
    ref = load_file(str(ref_out / "adapter_model.safetensors"))
    got = load_file(str(cut_out / "adapter_model.safetensors"))
    assert ref.keys() == got.keys()
    assert all(torch.equal(ref[k], got[k]) for k in ref)
