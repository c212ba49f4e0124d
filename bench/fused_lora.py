"""glmtune's fused layers against PEFT's and transformers' own forwards: seconds per step and peak RSS.

Two forwards: ``peft`` (PEFT's LoRA layer) and ``fused`` (glmtune's fused LoRA layer, ``training.fused_lora``).
Same training step as ``bench.checkpointing`` (LoRA r8 on every linear layer, AdamW, fp32, a fixed random batch),
each setting in its own process, the forwards alternating ``--rounds`` times so that a noisy machine hits them
alike; the best round of each is reported. The losses of every step must be equal in all.

    python -m bench.fused_lora [--model-size tiny|small] [--modes false selective] [--steps 3] [--rounds 2] --out DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.checkpointing import MODES, run_children, write_report

FORWARDS = ("peft", "fused")


def main(argv: list[str] | None = None) -> int:
    """Run each forward under each checkpointing mode and print the comparison."""
    ap = argparse.ArgumentParser(prog="python -m bench.fused_lora", description=__doc__.splitlines()[0])
    ap.add_argument("--model-size", choices=("tiny", "small"), default="small")
    ap.add_argument("--modes", nargs="+", choices=tuple(MODES), default=["false", "selective"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    from bench.throughput import build_model

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    model = str(build_model(args.model_size, out / "models"))
    settings = [[mode, model, lora] for _ in range(args.rounds) for mode in args.modes for lora in FORWARDS]
    rows = run_children("bench.checkpointing", settings,
                        ["--batch", str(args.batch), "--length", str(args.length), "--steps", str(args.steps),
                         "--out", str(out)], args.threads)
    if rows is None:
        return 1
    best: dict[tuple[str, str], dict] = {}
    for r in rows:
        key = (r["mode"], r["lora"])
        if key not in best or r["step_s"] < best[key]["step_s"]:
            best[key] = r
    print(f"model {args.model_size}; batch {args.batch} x {args.length} tokens; {args.steps} timed steps; "
          f"best of {args.rounds} rounds; {args.threads} thread(s)")
    print(f"{'checkpointing':<14}{'forward':<8}{'s/step':>8}{'vs PEFT':>9}{'peak RSS MB':>13}  every round's s/step")
    same = True
    for mode in args.modes:
        peft = best[(mode, "peft")]
        for lora in FORWARDS:
            r = best[(mode, lora)]
            rounds = " ".join(f"{x['step_s']:.2f}" for x in rows if (x["mode"], x["lora"]) == (mode, lora))
            print(f"{mode:<14}{lora:<8}{r['step_s']:>8.2f}{r['step_s'] / peft['step_s'] - 1:>+9.0%}"
                  f"{r['peak_rss_mb']:>13,.0f}  {rounds}")
            same &= all(abs(a - b) <= 1e-5 * max(1.0, abs(b)) for a, b in zip(r["losses"], peft["losses"]))
    print("losses equal (1e-5) with every forward" if same else "WARNING: losses differ between the forwards")
    write_report(out, args, rows, losses_equal=same)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
