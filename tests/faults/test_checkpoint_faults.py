"""Training faults: SIGKILL inside a checkpoint write, and a data file replaced while a run trains."""

from __future__ import annotations

import gc
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

from glmtune.train import checkpoint_io as ckpt
from glmtune.train.run_dir import readable
from tests.conftest import write_jsonl

ROWS = [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"answer number {i}"}]
        for i in range(24)]


def write_config(tmp: Path, model: Path, data: Path, out: Path) -> Path:
    cfg = tmp / f"{out.name}.yaml"
    cfg.write_text(
        f"model:\n  name_or_path: {model}\ndata:\n  train_file: {data}\n  max_length: 64\n  val_size: 0\n"
        "peft:\n  lora:\n    r: 4\n    alpha: 8\n    target_modules: all-linear\n"
        f"training:\n  output_dir: {out}\n  max_steps: 16\n  learning_rate: 5.0e-3\n  save_steps: 4\n"
        "  per_device_train_batch_size: 2\n  logging_steps: 1\n  early_stopping: false\n  save_total_limit: 3\n"
        "  report_to: []\n"
    )
    return cfg


def glmtune(*args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "glmtune", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1", **env})


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out, err


def losses(out: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def same_adapter(a: Path, b: Path) -> bool:
    x, y = load_file(str(a / "adapter_model.safetensors")), load_file(str(b / "adapter_model.safetensors"))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}: {proc.stderr.read()[-2000:]}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> tuple[Path, Path]:
    """An uninterrupted run: (its data file, its output folder)."""
    tmp = tmp_path_factory.mktemp("reference")
    data = write_jsonl(tmp / "d.jsonl", ROWS)
    out = tmp / "ref"
    code, _, err = finish(glmtune("train", str(write_config(tmp, tiny_model, data, out))))
    assert code == 0, err[-2000:]
    return data, out


@pytest.mark.slow
def test_sigkill_inside_a_checkpoint_write_leaves_only_complete_checkpoints(tmp_path, tiny_model, reference):
    data, ref = reference
    out = tmp_path / "cut"
    cfg = write_config(tmp_path, tiny_model, data, out)
    staging = out / f"{ckpt.STAGING_PREFIX}8"
    proc = glmtune("train", str(cfg), **{ckpt.PAUSE_ENV: "8"})  # checkpoint-8's save stops half-way
    wait_for(lambda: (staging / "rng_state.pth").is_file(), proc, "checkpoint-8 was half written")
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (staging / "adapter_model.safetensors").is_file() and not (staging / ckpt.MANIFEST).exists()
    assert [p.name for p in ckpt.checkpoints(out)] == ["checkpoint-4"]  # no half-written checkpoint-8
    assert all(ckpt.is_complete(p) and readable(p) for p in ckpt.checkpoints(out))

    code, said, err = finish(glmtune("train", str(cfg), "--resume", "auto"))
    assert code == 0, err[-2000:]
    assert f"removed {staging}: a partial checkpoint left by an interrupted save" in said
    assert f"resuming from {out / 'checkpoint-4'}" in said
    assert same_adapter(ref, out)
    assert not list(out.glob(".tmp-*"))
    assert [p.name for p in ckpt.checkpoints(out)] == ["checkpoint-8", "checkpoint-12", "checkpoint-16"]


@pytest.mark.slow
def test_data_replaced_mid_run_does_not_reach_it_and_blocks_resume(tmp_path, tiny_model, reference):
    original, ref = reference
    data = tmp_path / "d.jsonl"
    data.write_bytes(original.read_bytes())
    out = tmp_path / "run"
    cfg = write_config(tmp_path, tiny_model, data, out)
    proc = glmtune("train", str(cfg))
    log = out / "log.jsonl"
    wait_for(lambda: log.is_file() and any('"loss"' in line for line in log.read_text().splitlines()[1:]), proc,
             "training started")
    write_jsonl(data, [[m | {"content": m["content"] + " (edited)"} for m in conv] for conv in ROWS])
    assert proc.poll() is None, "the run ended before the data file was replaced"
    code, _, err = finish(proc)
    assert code == 0, err[-2000:]
    # the run encoded every sample before training: it trained exactly what the reference trained
    assert losses(out) == losses(ref) and same_adapter(ref, out)

    code, _, err = finish(glmtune("train", str(cfg), "--resume", "auto"))
    assert code == 2 and "Traceback" not in err
    assert "cannot resume: the config or the data changed since the run started (--force" in err
    assert f"data.{data}: " in err and " -> " in err  # the file's old and new SHA-256


@pytest.fixture()
def small_disk(tmp_path: Path):
    """A 2.5 MB tmpfs: room for one tiny-model checkpoint, not two (needs root; skipped otherwise)."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2500k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        gc.collect()  # the failed torch.save's file is held by the exception's frames until collected
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_really_full_disk_stops_the_run_clearly_and_keeps_the_previous_checkpoint(tmp_path, tiny_model,
                                                                                      small_disk):
    from glmtune.config.loader import validate_config
    from glmtune.errors import UserError
    from glmtune.train.recipe import train

    data = write_jsonl(tmp_path / "d.jsonl", ROWS[:12])
    out = small_disk / "run"
    cfg = validate_config({"model": {"name_or_path": str(tiny_model)}, "data": {"train_file": str(data), "val_size": 0},
                           "training": {"output_dir": str(out), "max_steps": 8, "save_steps": 2, "logging_steps": 1,
                                        "per_device_train_batch_size": 2, "early_stopping": False, "report_to": []}})
    with pytest.raises(UserError) as err:  # torch.save reports this one without an errno
        train(cfg)
    previous = ckpt.latest_complete(out)
    assert previous is not None and readable(previous)
    failed = out / f"checkpoint-{ckpt.checkpoint_step(previous) + 2}"
    assert str(err.value).startswith(f"could not save checkpoint {failed} (ENOSPC: No space left on device")
    assert f"the previous checkpoint {previous} is intact" in str(err.value)
    assert not list(out.glob(".tmp-*")) and ckpt.checkpoints(out) == [previous]
