"""Run a peer (LLaMA-Factory or TRL) from the main interpreter: convert the data, launch it in its venv, measure.

    python -m bench.peers.run --peer trl --steps 5 [--model DIR] [--data FILE.jsonl] [--out DIR]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.peers.spec import PeerResult, PeerSpec, trainer_state_log

__all__ = ["PEERS", "PeerMissing", "PeerResult", "PeerSpec", "run_peer", "venv_python"]

PEERS = ("llamafactory", "trl")
ROOT = Path(__file__).resolve().parents[2]
LAUNCH = Path(__file__).parent / "child" / "launch.py"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_DISABLED": "true",
           "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONUNBUFFERED": "1"}


class PeerMissing(RuntimeError):
    """A peer's virtualenv is not there."""


def venvs_dir() -> Path:
    """Where setup.sh puts the venvs: $GLMTUNE_BENCH_VENVS or bench/.venvs."""
    return Path(os.environ.get("GLMTUNE_BENCH_VENVS") or ROOT / "bench" / ".venvs")


def venv_python(peer: str) -> Path:
    """The python of a peer's venv, or a clear error telling how to make it."""
    if peer not in PEERS:
        raise ValueError(f"unknown peer {peer!r}; expected one of {', '.join(PEERS)}")
    python = venvs_dir() / peer / "bin" / "python"
    if not python.exists():
        raise PeerMissing(f"the {peer} venv is missing ({python}): run bench/peers/setup.sh")
    return python


def peer_module(peer: str) -> Any:
    """The module that knows the peer's data format and launch command."""
    return importlib.import_module(f"bench.peers.{peer}")


def use_bf16(spec: PeerSpec) -> bool:
    """bf16 when asked, or by default when the run will be on a bf16-capable GPU."""
    if spec.bf16 is not None:
        return spec.bf16
    import torch

    return spec.device != "cpu" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def child_env(device: str) -> dict[str, str]:
    """The environment of a child run: offline, no trackers, the project root importable, GPUs hidden for cpu."""
    env = {**os.environ, **OFFLINE}
    env.pop("PYTHONPATH", None)  # the peer sees its own venv; glmtune's worktree must not shadow anything there
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def run_monitored(cmd: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None) -> tuple[int, float, float]:
    """Run ``cmd`` with output to ``log_path``; return (returncode, wall seconds, peak RSS MB of its process tree).

    Without psutil the peak falls back to the largest single child's maximum RSS (``getrusage``).
    """
    try:
        import psutil
    except ImportError:
        psutil = None
    started = time.perf_counter()
    peak = 0
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
        root = psutil.Process(proc.pid) if psutil else None
        while proc.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)] if root else []
                peak = max(peak, sum(_rss(p) for p in tree))
            except Exception:  # psutil.NoSuchProcess: the tree changed while it was read
                pass
            time.sleep(0.1)
    if root is None:
        import resource

        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return proc.returncode, time.perf_counter() - started, peak / 2**20


def _rss(p: Any) -> int:
    try:
        return p.memory_info().rss
    except Exception:  # the process ended between listing and reading
        return 0


def absolute(spec: PeerSpec) -> PeerSpec:
    """The spec with absolute paths: the child runs in the output folder."""
    from dataclasses import replace

    return replace(spec, model_dir=str(Path(spec.model_dir).resolve()),
                   train_jsonl=str(Path(spec.train_jsonl).resolve()), out_dir=str(Path(spec.out_dir).resolve()))


def run_peer(peer: str, spec: PeerSpec) -> PeerResult:
    """Convert ``spec.train_jsonl`` for ``peer``, train it in its venv, and return what it produced and measured."""
    python = venv_python(peer)
    module = peer_module(peer)
    spec = absolute(spec)
    out = Path(spec.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    adapter_dir = out / "adapter"
    if adapter_dir.exists():
        shutil.rmtree(adapter_dir)
    argv, skipped = module.prepare(spec, out / "peer_data", adapter_dir, use_bf16(spec))
    if skipped:
        (out / "skipped.jsonl").write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in skipped))
    stats_path = out / "stats.json"
    stats_path.unlink(missing_ok=True)
    log_path = out / "peer.log"
    cmd = [str(python), str(LAUNCH), str(stats_path), *argv]
    rc, wall, peak = run_monitored(cmd, child_env(spec.device), log_path, cwd=out)
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    losses, runtime, steps = trainer_state_log(adapter_dir)
    return PeerResult(peer=peer, adapter_dir=str(adapter_dir), wall_s=round(wall, 2), train_s=runtime,
                      peak_rss_mb=round(peak, 1), losses=losses, trained_tokens=int(stats.get("trained_tokens", 0)),
                      input_tokens=int(stats.get("input_tokens", 0)), steps=steps, returncode=rc,
                      log_path=str(log_path), skipped=skipped, cuda_peak_mb=stats.get("cuda_peak_mb"))


def load_adapter_check(model_dir: str, adapter_dir: str) -> int:
    """Load the adapter with this interpreter's peft on the same base; return the number of LoRA weights found."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir)
    model = PeftModel.from_pretrained(base, adapter_dir)
    return sum(1 for n, _ in model.named_parameters() if "lora_" in n)


def smoke_data(path: Path) -> Path:
    """A few GLM-4 conversations (plain, multi-turn, and a tool call with its observation)."""
    tool = {"type": "function", "function": {"name": "get_weather", "description": "查询城市天气", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    convs = [
        [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！有什么可以帮你？"}],
        [{"role": "system", "content": "You are Nova."}, {"role": "user", "content": "Who are you?"},
         {"role": "assistant", "content": "I am Nova."}, {"role": "user", "content": "And your maker?"},
         {"role": "assistant", "content": "Acme Lab made me."}],
        [{"role": "system", "content": "", "tools": [tool]}, {"role": "user", "content": "北京今天天气怎么样？"},
         {"role": "assistant", "metadata": "get_weather", "content": "{\"city\": \"北京\"}"},
         {"role": "observation", "content": "{\"weather\": \"晴\", \"temp\": 25}"},
         {"role": "assistant", "content": "北京今天晴，气温25度。"}],
    ] * 4
    path.write_text("".join(json.dumps({"messages": c}, ensure_ascii=False) + "\n" for c in convs), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    """Smoke check: train a peer for a few steps on a tiny model and load its adapter here."""
    ap = argparse.ArgumentParser(prog="python -m bench.peers.run", description=__doc__.splitlines()[0])
    ap.add_argument("--peer", choices=PEERS, required=True)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--model", help="base model folder (default: a fresh glmtune make-tiny)")
    ap.add_argument("--data", help="GLM-4 messages JSONL (default: a built-in sample with a tool call)")
    ap.add_argument("--out", default="bench/out/peers")
    args = ap.parse_args(argv)
    out = Path(args.out) / args.peer
    out.mkdir(parents=True, exist_ok=True)
    model = args.model
    if not model:
        model = str(Path(args.out) / "tiny")
        if not (Path(model) / "config.json").exists():
            subprocess.run([sys.executable, "-m", "glmtune", "make-tiny", "--out", model], check=True)
    data = args.data or str(smoke_data(out / "smoke.jsonl"))
    spec = PeerSpec(model_dir=model, train_jsonl=data, out_dir=str(out), max_steps=args.steps, per_device_batch=2,
                    learning_rate=1e-3, max_length=512)
    try:
        result = run_peer(args.peer, spec)
    except PeerMissing as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    shown = {k: v for k, v in vars(result).items() if k != "skipped"}
    print(json.dumps(shown, indent=1, default=str))
    if not result.ok:
        print(f"error: {args.peer} failed (exit {result.returncode}); see {result.log_path}", file=sys.stderr)
        return 1
    print(f"adapter loads with peft {__import__('peft').__version__}: "
          f"{load_adapter_check(model, result.adapter_dir)} LoRA weights")
    return 0


if __name__ == "__main__":
    sys.exit(main())
