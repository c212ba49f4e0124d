"""The loss head alone at GLM-4's vocabulary: transformers' full-logits loss against glmtune's chunked loss.

Each setting runs in its own process (so that its peak RSS is its own): final hidden states of ``--tokens``
positions (``--trained`` of them trained, the rest prompt), an output layer of ``--hidden`` x ``--vocab``
(GLM-4: 151,552), then loss and backward, ``--steps`` times. ``full`` is what transformers does (logits for every
position, fp32, cross-entropy over the trained ones); ``chunked`` is ``glmtune.train.chunked_loss``. The losses
and the hidden-state gradients must agree.

    python -m bench.loss_head [--tokens 4096] [--trained 0.6] [--hidden 1024] [--vocab 151552] --out DIR
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any


def child(mode: str, tokens: int, trained: float, hidden: int, vocab: int, steps: int) -> dict[str, Any]:
    """Run ``steps`` loss + backward passes in this process; return time, memory, loss and a gradient checksum."""
    import torch
    import torch.nn.functional as F

    from glmtune.train.chunked_loss import chunked_lm_loss

    torch.manual_seed(0)
    head = torch.nn.Linear(hidden, vocab, bias=False).requires_grad_(False)
    states = torch.randn(1, tokens, hidden)
    labels = torch.randint(0, vocab, (1, tokens))
    labels[:, : int(tokens * (1 - trained))] = -100
    start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times, loss_value, checksum = [], 0.0, 0.0
    for _ in range(steps + 1):  # the first pass warms up and is not timed
        h = states.clone().requires_grad_(True)
        t0 = time.perf_counter()
        if mode == "full":
            logits = head(h).float()
            loss = F.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=-100)
        else:
            loss = chunked_lm_loss(h, labels, head).ce
        loss.backward()
        times.append(time.perf_counter() - t0)
        loss_value, checksum = float(loss), float(h.grad.abs().sum())
    return {"mode": mode, "step_s": sum(times[1:]) / steps, "start_rss_mb": start,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "loss": loss_value,
            "grad_abs_sum": checksum}


def main(argv: list[str] | None = None) -> int:
    """Run both settings in child processes and print the comparison."""
    ap = argparse.ArgumentParser(prog="python -m bench.loss_head", description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--trained", type=float, default=0.6, help="share of positions with a label")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--vocab", type=int, default=151552)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.tokens, args.trained, args.hidden, args.vocab, args.steps)))
        return 0
    from bench.checkpointing import run_children, write_report

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows = run_children("bench.loss_head", [["full"], ["chunked"]],
                        ["--tokens", str(args.tokens), "--trained", str(args.trained), "--hidden", str(args.hidden),
                         "--vocab", str(args.vocab), "--steps", str(args.steps), "--out", str(out)], args.threads)
    if rows is None:
        return 1
    full, chunked = rows
    print(f"{args.tokens} positions ({args.trained:.0%} trained), head {args.hidden} x {args.vocab:,}, fp32, "
          f"{args.steps} timed passes, {args.threads} thread(s)")
    print(f"{'loss':<9}{'s/pass':>8}{'peak RSS MB':>13}{'over start MB':>15}  loss        |grad|")
    for r in rows:
        print(f"{r['mode']:<9}{r['step_s']:>8.2f}{r['peak_rss_mb']:>13,.0f}{r['peak_rss_mb'] - r['start_rss_mb']:>15,.0f}"
              f"  {r['loss']:.6f}  {r['grad_abs_sum']:.4f}")
    same = abs(full["loss"] - chunked["loss"]) <= 1e-5 * max(1.0, abs(full["loss"])) and abs(
        full["grad_abs_sum"] - chunked["grad_abs_sum"]) <= 1e-4 * max(1.0, full["grad_abs_sum"])
    print("loss and gradient equal" if same else "WARNING: loss or gradient differ")
    write_report(out, args, rows, equal=same)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
