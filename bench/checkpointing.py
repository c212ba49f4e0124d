"""Activation checkpointing settings compared: seconds per step and peak RSS for false, selective and true.

Each setting runs in its own process (so that peak RSS is its own) on the throughput benchmark's GLM-4 models:
LoRA r8 on every linear layer, AdamW, fp32, a fixed random batch of ``--batch`` x ``--length`` tokens, one
warm-up step, then ``--steps`` timed steps. The loss of every step is printed too: it must be the same in every setting.

    python -m bench.checkpointing [--model-size tiny|small] [--steps 4] [--threads 1] [--lora fused|peft] --out DIR
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MODES = {"false": False, "selective": "selective", "true": True}


def child(mode: str, model_dir: str, batch: int, length: int, steps: int, lora: str = "fused") -> dict[str, Any]:
    """Train ``steps`` steps in this process with checkpointing ``mode`` and ``lora``: peft (PEFT's and
    transformers' own forwards) or fused (glmtune's fused LoRA layer: the default); return timing, memory and loss."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from glmtune.experimental.cpu_kernels.fused_lora import fuse_lora
    from glmtune.models import quiet_peft
    from glmtune.train.activation_checkpointing import enable_checkpointing

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with quiet_peft():
        enable_checkpointing(model, MODES[mode])
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear"))
    if lora == "fused":
        fuse_lora(model)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    gen = torch.Generator().manual_seed(1)
    vocab = model.config.vocab_size
    times, losses = [], []
    for _ in range(steps + 1):
        ids = torch.randint(10, vocab - 10, (batch, length), generator=gen)
        mask = torch.ones_like(ids)
        mask[batch // 2:, length * 3 // 4:] = 0  # half the rows padded by a quarter, as in a grouped batch
        began = time.perf_counter()
        loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - began)
        losses.append(loss.item())
    return {"mode": mode, "lora": lora, "step_s": sum(times[1:]) / steps, "start_rss_mb": start_rss,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "losses": losses}


def main(argv: list[str] | None = None) -> int:
    """Run every setting in a child process and print the comparison."""
    ap = argparse.ArgumentParser(prog="python -m bench.checkpointing", description=__doc__.splitlines()[0])
    ap.add_argument("--model-size", choices=("tiny", "small"), default="small")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--lora", choices=("fused", "peft"), default="fused",
                    help="fused: glmtune's fused LoRA layer (the default); peft: PEFT's and transformers' own forwards")
    ap.add_argument("--child", nargs=3, metavar=("MODE", "MODEL", "LORA"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.batch, args.length, args.steps, args.child[2])))
        return 0
    from bench.throughput import build_model

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(args.model_size, out / "models")
    rows = run_children("bench.checkpointing", [[mode, str(model), args.lora] for mode in MODES],
                        ["--batch", str(args.batch), "--length", str(args.length), "--steps", str(args.steps),
                         "--out", str(out)], args.threads)
    if rows is None:
        return 1
    base = rows[0]
    print(f"model {args.model_size}; batch {args.batch} x {args.length} tokens; {args.steps} timed steps; "
          f"{args.threads} thread(s); {args.lora} LoRA forward")
    print(f"{'setting':<10}{'s/step':>8}{'vs false':>10}{'peak RSS MB':>13}{'start RSS MB':>14}  losses")
    for r in rows:
        print(f"{r['mode']:<10}{r['step_s']:>8.2f}{r['step_s'] / base['step_s'] - 1:>+10.0%}"
              f"{r['peak_rss_mb']:>13,.0f}{r['start_rss_mb']:>14,.0f}  {' '.join(f'{x:.6f}' for x in r['losses'])}")
    same = all(abs(a - b) <= 1e-6 * max(1.0, abs(b)) for r in rows for a, b in zip(r["losses"], base["losses"]))
    print("losses equal (1e-6) in every setting" if same else "WARNING: losses differ between settings")
    write_report(out, args, rows, losses_equal=same)
    return 0 if same else 1


def run_children(module: str, settings: list[list[str]], common: list[str], threads: int) -> list[dict] | None:
    """Run ``python -m module --child SETTING... COMMON...`` once per setting, each in its own process (so that
    its peak RSS is its own); return the JSON each printed last, or None after printing a failure."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    rows = []
    for setting in settings:
        cmd = [sys.executable, "-m", module, "--child", *setting, *common]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=Path(__file__).parent.parent)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return None
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def write_report(out: Path, args: argparse.Namespace, rows: list[dict], **verdict: bool) -> None:
    """Write ``results.json``: date, machine, arguments, the rows and the verdict."""
    from bench.throughput import machine

    report = {"date": datetime.date.today().isoformat(), "machine": machine("cpu"), "args": vars(args), "rows": rows,
              **verdict}
    (out / "results.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.exit(main())
