"""Same config, data and seed on the same machine: the same loss curve and the same adapter bytes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_jsonl


@pytest.mark.slow
def test_two_runs_give_the_same_curve_and_adapter(tmp_path: Path, tiny_model: Path) -> None:
    rows = [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"answer number {i}"}]
            for i in range(24)]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    curves, adapters = [], []
    for run, hash_seed in (("a", "1"), ("b", "2")):  # separate processes, different str hashing
        out = tmp_path / run
        cfg = tmp_path / f"{run}.yaml"
        cfg.write_text(f"model:\n  name_or_path: {tiny_model}\ndata:\n  train_file: {data}\n  max_length: 64\n"
                       f"training:\n  output_dir: {out}\n  max_steps: 8\n  eval_steps: 4\n  logging_steps: 1\n"
                       "  per_device_train_batch_size: 2\n  report_to: []\n")
        proc = subprocess.run([sys.executable, "-m", "glmtune", "train", str(cfg)], capture_output=True, text=True,
                              timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": hash_seed})
        assert proc.returncode == 0, proc.stderr[-2000:]
        rows_logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        curves.append([(r["step"], r.get("loss"), r.get("eval_loss")) for r in rows_logged
                       if "loss" in r or "eval_loss" in r])
        adapters.append((out / "adapter_model.safetensors").read_bytes())
    assert len(curves[0]) >= 8 and any(e is not None for _, _, e in curves[0])  # train and validation losses
    assert curves[0] == curves[1]
    assert adapters[0] == adapters[1]
