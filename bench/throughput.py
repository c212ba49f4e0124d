"""Training throughput: glmtune vs. LLaMA-Factory vs. TRL on the same GLM-4-architecture model, data and settings.

Every contestant LoRA-tunes the same model on the same data (LLaMA-Factory's alpaca_en_demo + alpaca_zh_demo,
converted to GLM-4 messages, then by each peer to its own format) with the same max length, global batch,
steps, seed, learning rate, scheduler and LoRA settings, each in its own subprocess, one after the other.
glmtune runs with its real defaults (the planner decides packing / length grouping and activation
checkpointing); the validation split and early stopping are off for everyone, since the peers do not evaluate
either.

Measured per contestant: trained tokens (labels that enter the loss) and non-padding input tokens, counted
the same way in every process (bench/peers/child/launch.py), the Trainer's train_runtime, the wall time of
the process, the peak RSS of its process tree, the peak CUDA memory, and the final logged train loss.
glmtune's achieved FLOP/s is 6 x N x input tokens / train_runtime with N = every parameter of the model,
frozen ones included, compared with torch.matmul peaks measured in the same run: before the first contestant
and again after each one. Each contestant is compared with the higher of the two measurements around its own
run ("% adj"; a shared CPU's speed drifts by a quarter over minutes, so a peak measured far away in time says
little about the machine a contestant ran on) and with the highest measurement of the whole run ("% peak").

    python -m bench.throughput [--device cpu|cuda] [--steps N] [--model-size tiny|small|medium|large]
                               [--batch B] [--max-length L] [--contestants glmtune,llamafactory,trl] --out DIR
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from bench.peers.run import LAUNCH, PeerMissing, PeerSpec, absolute, child_env, run_monitored, run_peer
from bench.peers.spec import PeerResult

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT.parent / "shared" / "data"
DATA_FILES = ("alpaca_en_demo.json", "alpaca_zh_demo.json")
CONTESTANTS = ("glmtune", "llamafactory", "trl")
# GLM-4 shapes (Glm4ForCausalLM) on the tiny bilingual tokenizer; "tiny" is glmtune make-tiny itself.
SIZES: dict[str, dict[str, int] | None] = {
    "tiny": None,
    "small": {"hidden_size": 512, "intermediate_size": 1536, "num_hidden_layers": 4, "num_attention_heads": 8,
              "num_key_value_heads": 2, "head_dim": 64},
    "medium": {"hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 16, "num_attention_heads": 16,
               "num_key_value_heads": 2, "head_dim": 128},
    "large": {"hidden_size": 4096, "intermediate_size": 13696, "num_hidden_layers": 8, "num_attention_heads": 32,
              "num_key_value_heads": 2, "head_dim": 128},  # glm-4-9b's layer shape, 8 of its 40 layers
}


def build_model(size: str, out: Path) -> Path:
    """The base model for ``size``: glmtune's tiny model, or a random GLM-4 of a bigger shape on its tokenizer."""
    from glmtune.tiny.model import make_tiny
    from glmtune.world import tokenizer_corpus

    tiny = out / "tiny"
    if not (tiny / "config.json").exists():
        make_tiny(tiny, seed=0, corpus=tokenizer_corpus(0))
    shape = SIZES[size]
    if shape is None:
        return tiny
    target = out / size
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(tiny)
    for key, value in shape.items():
        setattr(config, key, value)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    if size in ("medium", "large"):
        model = model.to(torch.bfloat16)  # GPU sizes: halve the file; LoRA loads the frozen base in bf16 there
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(tiny).save_pretrained(target)
    for name in ("generation_config.json", "chat_template.jinja"):
        if (tiny / name).exists() and not (target / name).exists():
            shutil.copy(tiny / name, target / name)
    return target


def write_data(out: Path, data_dir: Path) -> tuple[Path, int]:
    """alpaca_en_demo + alpaca_zh_demo read by glmtune's own reader, written as GLM-4 messages JSONL."""
    from glmtune.data.read import read_any

    sources = [data_dir / name for name in DATA_FILES]
    missing = [str(p) for p in sources if not p.exists()]
    if missing:
        raise SystemExit(f"error: the shared data sets are missing: {', '.join(missing)}")
    path = out / "train.jsonl"
    rows = []
    for source in sources:
        rows += [{"messages": c.messages} for c in read_any(source).conversations]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path, len(rows)


def glmtune_config(spec: PeerSpec) -> dict[str, Any]:
    """glmtune's config for the shared settings; everything else (packing, guard, ...) stays at its default."""
    return {
        "model": {"name_or_path": spec.model_dir},
        "data": {"train_file": spec.train_jsonl, "max_length": spec.max_length, "val_size": 0},
        "peft": {"method": "lora", "lora": {"r": spec.lora_r, "alpha": spec.lora_alpha, "dropout": spec.lora_dropout,
                                            "target_modules": "all-linear"}},
        "training": {"output_dir": str(Path(spec.out_dir) / "adapter"), "max_steps": spec.max_steps,
                     "per_device_train_batch_size": spec.per_device_batch,
                     "gradient_accumulation_steps": spec.grad_accum, "learning_rate": spec.learning_rate,
                     "lr_scheduler_type": spec.scheduler, "warmup_ratio": spec.warmup_ratio,
                     "max_grad_norm": spec.max_grad_norm, "seed": spec.seed, "early_stopping": False,
                     "logging_steps": spec.logging_steps, "report_to": []},
    }


def run_glmtune(spec: PeerSpec, overrides: list[str] | None = None) -> PeerResult:
    """glmtune train in a subprocess of this interpreter, measured like the peers."""
    spec = absolute(spec)
    out = Path(spec.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = out / "glmtune.yaml"
    config.write_text(yaml.safe_dump(glmtune_config(spec), sort_keys=False))
    stats_path, log_path = out / "stats.json", out / "glmtune.log"
    stats_path.unlink(missing_ok=True)
    env = child_env(spec.device)
    env["PYTHONPATH"] = str(ROOT)
    cmd = [sys.executable, str(LAUNCH), str(stats_path), "glmtune.cli.main:main", "train", str(config),
           *(overrides or []), "--overwrite"]
    rc, wall, peak = run_monitored(cmd, env, log_path, cwd=out)
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    losses, runtime, steps = glmtune_log(out / "adapter" / "log.jsonl")
    return PeerResult(peer="glmtune", adapter_dir=str(out / "adapter"), wall_s=round(wall, 2), train_s=runtime,
                      peak_rss_mb=round(peak, 1), losses=losses, trained_tokens=int(stats.get("trained_tokens", 0)),
                      input_tokens=int(stats.get("input_tokens", 0)), steps=steps, returncode=rc,
                      log_path=str(log_path), cuda_peak_mb=stats.get("cuda_peak_mb"))


def glmtune_log(path: Path) -> tuple[list[tuple[int, float]], float | None, int]:
    """(step, loss), train_runtime and the last step from glmtune's ``log.jsonl``."""
    if not path.exists():
        return [], None, 0
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    losses = [(int(r["step"]), float(r["loss"])) for r in rows if "loss" in r]
    runtime = next((float(r["train_runtime"]) for r in reversed(rows) if "train_runtime" in r), None)
    return losses, runtime, max((int(r.get("step", 0)) for r in rows), default=0)


def matmul_peak(device: str, dtype_name: str, shapes: list[tuple[int, int, int]], seconds: float = 2.0) -> list[dict]:
    """Achieved FLOP/s of ``torch.matmul`` for each (m, k, n), best of repeated timed runs."""
    import torch

    dtype = getattr(torch, dtype_name)
    results = []
    for m, k, n in shapes:
        a = torch.randn(m, k, device=device, dtype=dtype)
        b = torch.randn(k, n, device=device, dtype=dtype)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        torch.matmul(a, b)
        sync()
        best, spent = float("inf"), 0.0
        while spent < seconds:
            start = time.perf_counter()
            reps = 10 if device == "cuda" else 1
            for _ in range(reps):
                torch.matmul(a, b)
            sync()
            took = (time.perf_counter() - start) / reps
            best, spent = min(best, took), spent + took * reps
        results.append({"m": m, "k": k, "n": n, "dtype": dtype_name, "flops": 2 * m * k * n / best})
    return results


def param_count(model_dir: Path) -> int:
    """Every parameter of the model, frozen ones included."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    return sum(p.numel() for p in model.parameters())


def machine(device: str) -> str:
    """A one-line description of where this ran."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = f"{cpu}, {os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    try:
        text += f", load average {os.getloadavg()[0]:.1f}"
    except OSError:
        pass
    if device == "cuda":
        text += f"; GPU {torch.cuda.get_device_name(0)}"
    return text + f"; torch {torch.__version__}"


def summarise(result: PeerResult, n_params: int) -> dict[str, Any]:
    """The numbers reported for one contestant."""
    row: dict[str, Any] = {"returncode": result.returncode, "steps": result.steps, "wall_s": result.wall_s,
                           "train_s": result.train_s, "trained_tokens": result.trained_tokens,
                           "input_tokens": result.input_tokens, "peak_rss_mb": result.peak_rss_mb,
                           "cuda_peak_mb": result.cuda_peak_mb,
                           "final_loss": result.losses[-1][1] if result.losses else None,
                           "log": result.log_path}
    if result.train_s:
        row["trained_tokens_per_s"] = result.trained_tokens / result.train_s
        row["input_tokens_per_s"] = result.input_tokens / result.train_s
        row["flops_6n"] = 6 * n_params * result.input_tokens / result.train_s
    return row


def print_peaks(peaks: list[dict]) -> None:
    """One line per measured matmul shape."""
    for p in peaks:
        print(f"matmul {p['m']}x{p['k']} @ {p['k']}x{p['n']} {p['dtype']} ({p['when']}): {p['flops']:.3g} FLOP/s")


def print_table(rows: dict[str, dict[str, Any]], peak: float) -> None:
    """One line per contestant, with ratios to LLaMA-Factory where it ran."""
    ref = rows.get("llamafactory", {})
    print(f"{'contestant':<13}{'trained tok/s':>14}{'x LF':>7}{'train s':>9}{'wall s':>8}{'RSS MB':>9}"
          f"{'CUDA MB':>9}{'loss':>8}{'6N FLOP/s':>11}{'% adj':>7}{'% peak':>8}")
    for name, r in rows.items():
        if "trained_tokens_per_s" not in r:
            print(f"{name:<13} failed or skipped: {r.get('note') or r.get('log')}")
            continue
        ratio = r["trained_tokens_per_s"] / ref["trained_tokens_per_s"] if ref.get("trained_tokens_per_s") else None
        loss = f"{r['final_loss']:.4f}" if r["final_loss"] is not None else "n/a"
        cuda = f"{r['cuda_peak_mb']:,.0f}" if r["cuda_peak_mb"] else "-"
        print(f"{name:<13}{r['trained_tokens_per_s']:>14,.0f}{(f'{ratio:.2f}' if ratio else '-'):>7}"
              f"{r['train_s']:>9.1f}{r['wall_s']:>8.1f}{r['peak_rss_mb']:>9,.0f}"
              f"{cuda:>9}{loss:>8}"
              f"{r['flops_6n']:>11.3g}{100 * r['flops_6n'] / r['adjacent_peak']:>6.1f}%"
              f"{100 * r['flops_6n'] / peak:>7.1f}%")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m bench.throughput``."""
    ap = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--model-size", choices=tuple(SIZES), default="tiny")
    ap.add_argument("--batch", type=int, default=8, help="global batch = micro-batch (no accumulation)")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--contestants", default=",".join(CONTESTANTS))
    ap.add_argument("--data-dir", default=str(DATA_DIR), help="folder with alpaca_en_demo.json and alpaca_zh_demo.json")
    ap.add_argument("--glmtune-set", action="append", default=[], metavar="KEY=VALUE",
                    help="a glmtune config override for its run, e.g. data.packing=false (repeatable)")
    ap.add_argument("--out", required=True)
    return ap


def peak_shapes(device: str, batch: int, config: dict[str, Any]) -> list[tuple[int, int, int]]:
    """The matmul shapes timed for the peak: one MLP-sized product of the model, one big square one."""
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    tokens = batch * 256  # about one packed micro-batch of alpaca samples
    big = 8192 if device == "cuda" else 2048
    return [(tokens, hidden, inter), (big, big, big)]


def contestant_spec(args: argparse.Namespace, name: str, model: Path, data: Path, out: Path, bf16: bool) -> PeerSpec:
    """The shared settings every contestant trains with, in its own folder ``out/name``."""
    return PeerSpec(model_dir=str(model), train_jsonl=str(data), out_dir=str(out / name), lora_r=8,
                    lora_alpha=16, lora_dropout=0.0, target_modules="all", learning_rate=2e-4,
                    max_steps=args.steps, per_device_batch=args.batch, grad_accum=1,
                    max_length=args.max_length, seed=42, scheduler="linear", warmup_ratio=0.0,
                    bf16=bf16, device=args.device, logging_steps=max(1, args.steps // 10))


def run_contestants(args: argparse.Namespace, model: Path, data: Path, out: Path, n_params: int, bf16: bool,
                    dtype: str, shapes: list[tuple[int, int, int]], peaks: list[dict]
                    ) -> tuple[dict[str, dict[str, Any]], PeerSpec]:
    """Run each contestant, timing the matmul peak again after each (appended to ``peaks``); rows and last spec."""
    rows: dict[str, dict[str, Any]] = {}
    previous = peaks
    for name in args.contestants.split(","):
        spec = contestant_spec(args, name, model, data, out, bf16)
        print(f"running {name} ...", flush=True)
        try:
            result = run_glmtune(spec, args.glmtune_set) if name == "glmtune" else run_peer(name, spec)
        except PeerMissing as e:
            rows[name] = {"note": f"skipped: {e}"}
            print(f"  {rows[name]['note']}")
            continue
        rows[name] = summarise(result, n_params)
        if result.returncode != 0:
            print(f"  {name} failed (exit {result.returncode}); see {result.log_path}")
        # measured again after each contestant; the higher of the two around it is its bar, so a busy
        # moment cannot lower it
        after = [{**p, "when": f"after {name}"} for p in matmul_peak(args.device, dtype, shapes)]
        print_peaks(after)
        if "flops_6n" in rows[name]:
            rows[name]["adjacent_peak"] = max(p["flops"] for p in previous + after)
        peaks += after
        previous = after
    return rows, spec


def main(argv: list[str] | None = None) -> int:
    """Run the contestants one at a time and write results.json."""
    args = build_parser().parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no GPU", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(args.model_size, out / "models")
    data, samples = write_data(out, Path(args.data_dir))
    n_params = param_count(model)
    bf16 = args.device == "cuda" and torch.cuda.is_bf16_supported()
    dtype = "bfloat16" if bf16 else "float32"
    config = json.loads((model / "config.json").read_text())
    shapes = peak_shapes(args.device, args.batch, config)
    peaks = [{**p, "when": "before"} for p in matmul_peak(args.device, dtype, shapes)]
    print(f"model {args.model_size}: {n_params:,} parameters; data {samples} samples; device {args.device} ({dtype})")
    print_peaks(peaks)
    rows, spec = run_contestants(args, model, data, out, n_params, bf16, dtype, shapes, peaks)
    peak = max(p["flops"] for p in peaks)
    print(f"matmul peak: {peak:.3g} FLOP/s (the highest of the runs above)")
    print_table(rows, peak)
    report = {"date": datetime.date.today().isoformat(), "machine": machine(args.device), "args": vars(args),
              "model": {"size": args.model_size, "params": n_params, "dtype": dtype,
                        "shape": {k: config[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers")}},
              "samples": samples, "matmul": peaks, "flops_formula": "6 * N_all_params * input_tokens / train_runtime",
              "settings": {k: v for k, v in asdict(spec).items() if k not in ("model_dir", "train_jsonl", "out_dir")},
              "results": rows}
    (out / "results.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
