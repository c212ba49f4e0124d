"""Stability benchmark: glmtune's defaults vs. the same without the guard vs. the official GLM-4 LoRA recipe.

Every contestant LoRA-tunes the demo's tiny base (ChatGLM by Zhipu AI) on the same 30 identity samples
(LLaMA-Factory's identity.json filled with Nova / Acme Lab) and logs the loss of every optimiser step. The
spike metric is computed offline from each run's ``log.jsonl`` with one definition for all contestants; the
held-out loss is one forward pass over the other 61 samples with the GLM-4 layout, on the saved model. A
learning-rate torture (×10, ×100 the planned rate, guard on/off) follows.

    python -m bench.stability [--base-dir DIR] [--seeds 5] [--out bench/out/stability] [--quick]
                              [--official-steps N] [--threads N] [--reuse] [--progress]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from bench.stability_runs import (
    AUTHOR,
    DATA,
    EMA_BETA,
    FINAL_WINDOW,
    NAME,
    SELECTION_SEED,
    TRAIN_SAMPLES,
    fmt_num,
    glmtune_config,
    heldout_loss,
    mean_sd,
    official_config,
    planned_lr,
    prepare_data,
    run_one,
)

TORTURE_STEPS = 150
TORTURE_FACTORS = (10, 100)
CONTESTANTS = ("glmtune", "guard-off", "official")


# ---- report -----------------------------------------------------------------------------------------------

def _ratio(r: dict[str, Any]) -> str:
    step = r.get("max_ratio_step")
    return fmt_num(r["max_ratio"], 2) + (f" (step {step})" if step else "")


def _events(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} ×{v}" for k, v in counts.items()) or "0"


def _ms(values: list[Any], digits: int = 3) -> str:
    mean, sd, bad = mean_sd(values)
    text = "n/a" if mean is None else f"{mean:.{digits}f} ± {sd:.{digits}f}"
    return text + (f" ({bad} not finite)" if bad else "")


def machine() -> dict[str, Any]:
    """What the benchmark ran on."""
    import torch

    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        out = ""
    model = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "")
    return {"nproc": os.cpu_count(), "cpu": model or platform.processor(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="minutes")}


def render(results: dict[str, Any]) -> str:
    """The markdown report."""
    m, s = results["machine"], results["settings"]
    sweep, torture = results["sweep"], results["torture"]
    lines = [f"## Stability benchmark ({m['date']})", "",
             f"Machine: {m['nproc']} CPU cores ({m['cpu']}), torch {m['torch']} on {m['torch_threads']} thread(s). "
             f"Base: {s['base']} ({s['base_dir']}). Data: {s['train_samples']} identity samples ({NAME} / {AUTHOR}), "
             f"{s['heldout_samples']} held out. Seeds: {', '.join(map(str, s['seeds']))}. "
             f"Official recipe: configs/lora.yaml with max_steps {s['official_steps']}"
             + (" (lowered from 3000 with --official-steps)." if s["official_steps"] != 3000 else ".")
             + f" Held-out loss of the base before any fine-tune: {fmt_num(results.get('base_heldout_loss'))}.", "",
             summary_paragraph(sweep), "",
             "| seed | contestant | max loss/avg | guard events | final train loss | held-out loss | best step "
             "| steps | wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sweep:
        lines.append(f"| {r['seed']} | {r['label']} | {_ratio(r)} | {_events(r['guard_events'])} | "
                     f"{fmt_num(r['final_loss'])} | {fmt_num(r['heldout_loss'])} | {r['best_step'] or '-'} | {r['steps']} | "
                     f"{r['wall_s']:.0f} |")
    lines += ["", f"Learning-rate torture: planned LoRA lr {torture['planned_lr']:g} (from the glmtune run's "
              f"plan.json) × {', ×'.join(str(f) for f in TORTURE_FACTORS)}, seed {torture['seed']}, "
              f"max_steps {TORTURE_STEPS}, early stopping off.", "",
              "| lr | guard | finite weights and loss | final train loss | held-out loss | max loss/avg "
              "| non-finite steps | guard events |", "|---|---|---|---|---|---|---|---|"]
    for r in torture["runs"]:
        lines.append(f"| {r['lr']:g} (×{r['factor']}) | {'on' if r['guard'] else 'off'} | "
                     f"{'yes' if r['finite'] else 'no'} | {fmt_num(r['final_loss'])} | {fmt_num(r['heldout_loss'])} | "
                     f"{_ratio(r)} | {r['nonfinite_steps']} | {_events(r['guard_events'])} |")
    lines += ["", "Max loss/avg: the largest step loss / EMA (beta 0.9) of the previous step losses, from "
              "log.jsonl, first step skipped (in brackets: the logged step where it happened). Final train loss: mean of the last 10 logged step losses. "
              "Held-out loss: mean loss per supervised token on the held-out samples, final saved model "
              "(the best checkpoint when early stopping kept one)."]
    return "\n".join(lines) + "\n"


def summary_paragraph(sweep: list[dict[str, Any]]) -> str:
    """One paragraph: means ± sd per contestant."""
    parts = []
    for label in CONTESTANTS:
        rs = [r for r in sweep if r["label"] == label]
        if not rs:
            continue
        events = sum(sum(r["guard_events"].values()) for r in rs)
        parts.append(f"**{label}** (n={len(rs)}): max loss/avg {_ms([r['max_ratio'] for r in rs], 2)}, "
                     f"final train loss {_ms([r['final_loss'] for r in rs])}, held-out loss "
                     f"{_ms([r['heldout_loss'] for r in rs])}, steps {_ms([r['steps'] for r in rs], 0)}, "
                     f"wall {_ms([r['wall_s'] for r in rs], 0)} s, {events} guard events in all")
    return "Means ± sd over seeds: " + "; ".join(parts) + "."


# ---- main -------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m bench.stability``."""
    parser = argparse.ArgumentParser(prog="python -m bench.stability", description=__doc__.split("\n")[0])
    parser.add_argument("--base-dir", type=Path, help="where the demo base is built/cached (default: OUT/base)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds of the sweep (0..N-1)")
    parser.add_argument("--out", type=Path, default=Path("bench/out/stability"))
    parser.add_argument("--quick", action="store_true", help="use the small QUICK_BASE")
    parser.add_argument("--official-steps", type=int, default=3000, help="max_steps of the official recipe")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--reuse", action="store_true", help="reuse runs measured earlier in OUT")
    parser.add_argument("--progress", action="store_true", help="show the training progress bars")
    return parser


def configure_runtime(progress: bool, threads: int | None) -> None:
    """Quiet progress bars, FutureWarnings and transformers' logging unless ``progress``; set torch's threads."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if not progress:
        os.environ["TQDM_DISABLE"] = "1"
        warnings.filterwarnings("ignore", category=FutureWarning)
    import torch
    import transformers

    if not progress:
        transformers.logging.set_verbosity_error()
    if threads:
        torch.set_num_threads(threads)


def run_sweep(base: Path, train_file: Path, heldout: list[list[dict[str, Any]]], out: Path, seeds: list[int],
              official_steps: int, reuse: bool) -> list[dict[str, Any]]:
    """Every contestant once per seed; one measured row each, tagged with its seed."""
    sweep: list[dict[str, Any]] = []
    for seed in seeds:
        print(f"seed {seed}")
        runs = {
            "glmtune": glmtune_config(base, train_file, out / "runs" / f"glmtune-s{seed}", seed),
            "guard-off": {**glmtune_config(base, train_file, out / "runs" / f"guard-off-s{seed}", seed),
                          "stability": {"enabled": False}},
            "official": official_config(base, train_file, out / "runs" / f"official-{official_steps}-s{seed}",
                                        seed, official_steps),
        }
        for label, cfg in runs.items():
            sweep.append({"seed": seed, **run_one(label, cfg, base, heldout, reuse)})
    return sweep


def run_torture(base: Path, train_file: Path, heldout: list[list[dict[str, Any]]], out: Path, seed: int,
                lr: float, reuse: bool) -> list[dict[str, Any]]:
    """glmtune at each ``TORTURE_FACTORS`` multiple of the planned ``lr``, guard on and off; one row per run."""
    torture_runs = []
    for factor in TORTURE_FACTORS:
        for guard in (True, False):
            name = f"torture-x{factor}-guard-{'on' if guard else 'off'}"
            cfg = glmtune_config(base, train_file, out / "runs" / name, seed, learning_rate=lr * factor,
                                 max_steps=TORTURE_STEPS, early_stopping=False)
            cfg["stability"] = {"enabled": guard}
            print(f"torture: lr {lr * factor:g}, guard {'on' if guard else 'off'}")
            torture_runs.append({"factor": factor, "lr": lr * factor, "guard": guard,
                                 **run_one(name, cfg, base, heldout, reuse)})
    return torture_runs


def run_settings(args: argparse.Namespace, base: Path, seeds: list[int], heldout: list[Any]) -> dict[str, Any]:
    """The settings block of ``results.json``: base, seeds, data split and metric parameters."""
    from glmtune.demo.base import read_build_info

    return {"base": "QUICK_BASE" if args.quick else "FULL_BASE", "base_dir": str(base), "seeds": seeds,
            "base_build": read_build_info(base),
            "official_steps": args.official_steps, "train_samples": TRAIN_SAMPLES,
            "heldout_samples": len(heldout), "selection_seed": SELECTION_SEED, "ema_beta": EMA_BETA,
            "final_window": FINAL_WINDOW, "torture_steps": TORTURE_STEPS}


def write_results(out: Path, results: dict[str, Any]) -> None:
    """Write ``results.json`` and the markdown report ``stability.md``; print the report."""
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    report = render(results)
    (out / "stability.md").write_text(report, encoding="utf-8")
    print(report)
    print(f"wrote {out / 'results.json'} and {out / 'stability.md'} in {results['seconds']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    args = build_parser().parse_args(argv)
    if not DATA.is_file():
        print(f"error: {DATA} not found; this benchmark needs the shared data sets (../shared/data next to the "
              "project root)", file=sys.stderr)
        return 2
    configure_runtime(args.progress, args.threads)
    from glmtune.demo.base import FULL_BASE, QUICK_BASE, build_base
    from glmtune.log import setup_logging

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    setup_logging()  # build_base's progress lines
    base = build_base(args.base_dir or out / "base", QUICK_BASE if args.quick else FULL_BASE)
    train_file, heldout = prepare_data(out / "data")
    seeds = list(range(args.seeds))
    started = time.perf_counter()
    sweep = run_sweep(base, train_file, heldout, out, seeds, args.official_steps, args.reuse)
    lr = planned_lr(out / "runs" / f"glmtune-s{seeds[0]}")
    torture_runs = run_torture(base, train_file, heldout, out, seeds[0], lr, args.reuse)
    results = {
        "machine": machine(),
        "settings": run_settings(args, base, seeds, heldout),
        "sweep": sweep,
        "torture": {"planned_lr": lr, "seed": seeds[0], "runs": torture_runs},
        "base_heldout_loss": heldout_loss(base, base, heldout),
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_results(out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
