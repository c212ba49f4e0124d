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
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "identity.json"
NAME, AUTHOR = "Nova", "Acme Lab"
TRAIN_SAMPLES = 30
SELECTION_SEED = 0  # which 30 of the 91 identity samples are trained on; the other 61 are held out
EMA_BETA = 0.9
FINAL_WINDOW = 10
TORTURE_STEPS = 150
TORTURE_FACTORS = (10, 100)
CONTESTANTS = ("glmtune", "guard-off", "official")
OFFICIAL_YAML = Path(__file__).resolve().parents[1] / "configs" / "lora.yaml"


# ---- offline metrics on log.jsonl -------------------------------------------------------------------------

def read_log(path: str | Path) -> list[dict[str, Any]]:
    """Every row of a ``log.jsonl`` (NaN/Infinity allowed), skipping blank or broken lines."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def step_losses(rows: list[dict[str, Any]]) -> list[float]:
    """Per-step training losses in log order; a step whose loss or grad norm is not finite becomes NaN.

    transformers replaces a NaN step loss by an average of earlier losses before logging it (0.0 right after
    a log when ``logging_steps`` is 1), so a non-finite ``grad_norm`` is what marks such a step.
    """
    out = []
    for row in rows:
        if "event" in row or "loss" not in row:
            continue
        loss, norm = row["loss"], row.get("grad_norm")
        ok = _finite(loss) and (norm is None or _finite(norm))
        out.append(float(loss) if ok else math.nan)
    return out


def spike_ratios(losses: list[float], beta: float = EMA_BETA) -> list[float]:
    """``loss_t / EMA_{t-1}`` for every step after the first; EMA (``beta``) of the earlier finite losses.

    A non-finite loss gives a ratio of ``inf`` and does not enter the average.
    """
    ratios: list[float] = []
    ema: float | None = None
    for loss in losses:
        if not math.isfinite(loss):
            if ema is not None:
                ratios.append(math.inf)
            continue
        if ema is not None:
            ratios.append(loss / ema if ema > 0 else math.inf)
        ema = loss if ema is None else beta * ema + (1 - beta) * loss
    return ratios


def max_ratio(losses: list[float], beta: float = EMA_BETA) -> float | None:
    """Largest step loss / running average ratio, or None with fewer than two steps."""
    ratios = spike_ratios(losses, beta)
    return max(ratios) if ratios else None


def max_ratio_step(losses: list[float], beta: float = EMA_BETA) -> int | None:
    """1-based index (in logged steps) of the step with the largest ratio, or None."""
    ratios = spike_ratios(losses, beta)
    if not ratios:
        return None
    # ratios start at the second logged step; a NaN before the first finite loss has no ratio
    first = next(i for i, x in enumerate(losses) if math.isfinite(x))
    return first + 2 + max(range(len(ratios)), key=ratios.__getitem__)


def final_loss(losses: list[float], window: int = FINAL_WINDOW) -> float | None:
    """Mean of the last ``window`` step losses (NaN when one of them is not finite), None without steps."""
    tail = losses[-window:]
    return sum(tail) / len(tail) if tail else None


def guard_event_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many guard events of each kind a log holds (the recipe's closing ``end`` row is not one)."""
    return dict(sorted(Counter(str(r["event"]) for r in rows if "event" in r and r["event"] != "end").items()))


def mean_sd(values: list[float | None]) -> tuple[float | None, float | None, int]:
    """Mean and sample sd of the finite values, and how many values were not finite (or missing)."""
    good = [float(v) for v in values if v is not None and math.isfinite(v)]
    bad = len(values) - len(good)
    if not good:
        return None, None, bad
    return statistics.fmean(good), (statistics.stdev(good) if len(good) > 1 else 0.0), bad


# ---- data and configs -------------------------------------------------------------------------------------

def prepare_data(out: Path) -> tuple[Path, list[list[dict[str, Any]]]]:
    """Write the 30 training samples as GLM-4 JSONL; return its path and the 61 held-out conversations."""
    from glmtune.data.placeholders import fill_placeholders
    from glmtune.data.read import read_any

    read = read_any(DATA, "alpaca")
    convs = [fill_placeholders(c.messages, {"name": NAME, "author": AUTHOR}) for c in read.conversations]
    picked = set(random.Random(SELECTION_SEED).sample(range(len(convs)), TRAIN_SAMPLES))
    train = [c for i, c in enumerate(convs) if i in picked]
    heldout = [c for i, c in enumerate(convs) if i not in picked]
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train.jsonl", train), ("heldout.jsonl", heldout)):
        (out / name).write_text("".join(json.dumps({"messages": c}, ensure_ascii=False) + "\n" for c in part),
                                encoding="utf-8")
    return out / "train.jsonl", heldout


def glmtune_config(base: Path, train_file: Path, out_dir: Path, seed: int, **training: Any) -> dict[str, Any]:
    """glmtune's defaults: only the model, the data, the output folder, the seed and per-step logging."""
    return {"model": {"name_or_path": str(base)}, "data": {"train_file": str(train_file)},
            "training": {"output_dir": str(out_dir), "seed": seed, "logging_steps": 1, **training}}


def official_config(base: Path, train_file: Path, out_dir: Path, seed: int, max_steps: int) -> dict[str, Any]:
    """``configs/lora.yaml`` as it is, pointed at our model and data, logging every step."""
    from glmtune.config.loader import read_yaml

    cfg = read_yaml(OFFICIAL_YAML)
    cfg["model"]["name_or_path"] = str(base)
    cfg["data"]["train_file"] = str(train_file)
    cfg["training"].update(output_dir=str(out_dir), seed=seed, logging_steps=1, max_steps=max_steps)
    return cfg


# ---- running and measuring --------------------------------------------------------------------------------

def heldout_loss(base: Path, run_dir: Path, convs: list[list[dict[str, Any]]], max_length: int = 1025,
                 batch_size: int = 16) -> float:
    """Mean loss per supervised token of ``convs`` (GLM-4 layout, last reply trained) under the saved model."""
    import torch

    from glmtune.layout import get_layout
    from glmtune.layout.base import IGNORE_INDEX
    from glmtune.models import load_model, load_tokenizer_for

    adapter = str(run_dir) if (run_dir / "adapter_config.json").is_file() else None
    tokenizer = load_tokenizer_for(str(base), adapter)
    layout = get_layout(tokenizer)
    model = load_model(str(base), adapter=adapter)
    samples = [layout.encode(c, combine=True) for c in convs]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(samples), batch_size):
            chunk = samples[start:start + batch_size]
            width = max(min(len(s.input_ids), max_length) for s in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            labels = torch.full((len(chunk), width), IGNORE_INDEX, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, s in enumerate(chunk):
                n = min(len(s.input_ids), max_length)
                ids[i, :n] = torch.tensor(s.input_ids[:n])
                labels[i, :n] = torch.tensor(s.labels[:n])
                mask[i, :n] = 1
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
            target = labels[:, 1:]
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                    target.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")
            total += float(nll)
            count += int((target != IGNORE_INDEX).sum())
    return total / max(count, 1)


def weights_finite(run_dir: Path) -> bool | None:
    """Whether every tensor of the saved adapter is finite (None when no adapter file was saved)."""
    import torch
    from safetensors.torch import load_file

    path = run_dir / "adapter_model.safetensors"
    if not path.is_file():
        return None
    return all(bool(torch.isfinite(t).all()) for t in load_file(str(path)).values())


def run_one(label: str, cfg: dict[str, Any], base: Path, heldout: list[list[dict[str, Any]]],
            reuse: bool, say: Any) -> dict[str, Any]:
    """Train one contestant, then measure it from its run folder; ``reuse`` keeps an earlier measurement."""
    from transformers import set_seed

    from glmtune.config.loader import validate_config
    from glmtune.train.recipe import train

    run_dir = Path(cfg["training"]["output_dir"])
    saved = run_dir / "bench_metrics.json"
    if reuse and saved.is_file():
        say(f"  {label}: reusing {saved}")
        return json.loads(saved.read_text())
    lines: list[str] = []
    # The LoRA weights are drawn before the Trainer seeds itself: seed here, so that every contestant's
    # initial adapter depends on its seed alone, not on what ran earlier in this process.
    set_seed(int(cfg["training"]["seed"]))
    started = time.perf_counter()
    train(validate_config(cfg, source=label), say=lines.append, overwrite=True)
    wall = time.perf_counter() - started
    (run_dir / "train_output.txt").write_text("\n".join(map(str, lines)) + "\n", encoding="utf-8")
    metrics = measure(run_dir, base, heldout)
    metrics.update(label=label, wall_s=round(wall, 1))
    saved.write_text(json.dumps(metrics, indent=2))
    say(f"  {label}: {metrics['steps']} steps, max ratio {_f(metrics['max_ratio'], 2)}, "
        f"final loss {_f(metrics['final_loss'])}, held-out {_f(metrics['heldout_loss'])}, "
        f"events {metrics['guard_events'] or '-'}, {wall:.0f} s")
    return metrics


def measure(run_dir: Path, base: Path, heldout: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Offline metrics of a finished run folder."""
    rows = read_log(run_dir / "log.jsonl")
    losses = step_losses(rows)
    summary = json.loads((run_dir / "summary.json").read_text())
    finite_w, held = weights_finite(run_dir), heldout_loss(base, run_dir, heldout)
    return {
        "run_dir": str(run_dir),
        "max_ratio": max_ratio(losses),
        "max_ratio_step": max_ratio_step(losses),
        "guard_events": guard_event_counts(rows),
        "final_loss": final_loss(losses),
        "nonfinite_steps": sum(1 for x in losses if not math.isfinite(x)),
        "heldout_loss": held,
        "best_step": summary.get("best_step"),
        "steps": summary.get("steps"),
        "logged_steps": len(losses),
        "stopped_early": summary.get("stopped_early"),
        "weights_finite": finite_w,
        "finite": bool(finite_w is not False and math.isfinite(held) and losses and math.isfinite(losses[-1])),
    }


def planned_lr(run_dir: Path) -> float:
    """The learning rate the planner chose for a run (its ``plan.json``)."""
    plan = json.loads((run_dir / "plan.json").read_text())
    return float(next(item["value"] for item in plan["plan"] if item["key"] == "training.learning_rate"))


# ---- report -----------------------------------------------------------------------------------------------

def _f(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return f"{x:.{digits}f}"


def _ratio(r: dict[str, Any]) -> str:
    step = r.get("max_ratio_step")
    return _f(r["max_ratio"], 2) + (f" (step {step})" if step else "")


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
             + f" Held-out loss of the base before any fine-tune: {_f(results.get('base_heldout_loss'))}.", "",
             summary_paragraph(sweep), "",
             "| seed | contestant | max loss/avg | guard events | final train loss | held-out loss | best step "
             "| steps | wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sweep:
        lines.append(f"| {r['seed']} | {r['label']} | {_ratio(r)} | {_events(r['guard_events'])} | "
                     f"{_f(r['final_loss'])} | {_f(r['heldout_loss'])} | {r['best_step'] or '-'} | {r['steps']} | "
                     f"{r['wall_s']:.0f} |")
    lines += ["", f"Learning-rate torture: planned LoRA lr {torture['planned_lr']:g} (from the glmtune run's "
              f"plan.json) × {', ×'.join(str(f) for f in TORTURE_FACTORS)}, seed {torture['seed']}, "
              f"max_steps {TORTURE_STEPS}, early stopping off.", "",
              "| lr | guard | finite weights and loss | final train loss | held-out loss | max loss/avg "
              "| non-finite steps | guard events |", "|---|---|---|---|---|---|---|---|"]
    for r in torture["runs"]:
        lines.append(f"| {r['lr']:g} (×{r['factor']}) | {'on' if r['guard'] else 'off'} | "
                     f"{'yes' if r['finite'] else 'no'} | {_f(r['final_loss'])} | {_f(r['heldout_loss'])} | "
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

def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.stability", description=__doc__.split("\n")[0])
    parser.add_argument("--base-dir", type=Path, help="where the demo base is built/cached (default: OUT/base)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds of the sweep (0..N-1)")
    parser.add_argument("--out", type=Path, default=Path("bench/out/stability"))
    parser.add_argument("--quick", action="store_true", help="use the small QUICK_BASE")
    parser.add_argument("--official-steps", type=int, default=3000, help="max_steps of the official recipe")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--reuse", action="store_true", help="reuse runs measured earlier in OUT")
    parser.add_argument("--progress", action="store_true", help="show the training progress bars")
    args = parser.parse_args(argv)
    if not DATA.is_file():
        print(f"error: {DATA} not found; this benchmark needs the shared data sets (../shared/data next to the "
              "project root)", file=sys.stderr)
        return 2
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if not args.progress:
        os.environ["TQDM_DISABLE"] = "1"
        warnings.filterwarnings("ignore", category=FutureWarning)
    import torch
    import transformers

    from glmtune.demo.base import FULL_BASE, QUICK_BASE, build_base, read_build_info

    if not args.progress:
        transformers.logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    say = print
    base = build_base(args.base_dir or out / "base", QUICK_BASE if args.quick else FULL_BASE, say)
    train_file, heldout = prepare_data(out / "data")
    seeds = list(range(args.seeds))
    started = time.perf_counter()
    sweep: list[dict[str, Any]] = []
    for seed in seeds:
        say(f"seed {seed}")
        runs = {
            "glmtune": glmtune_config(base, train_file, out / "runs" / f"glmtune-s{seed}", seed),
            "guard-off": {**glmtune_config(base, train_file, out / "runs" / f"guard-off-s{seed}", seed),
                          "stability": {"enabled": False}},
            "official": official_config(base, train_file, out / "runs" / f"official-{args.official_steps}-s{seed}",
                                        seed, args.official_steps),
        }
        for label, cfg in runs.items():
            sweep.append({"seed": seed, **run_one(label, cfg, base, heldout, args.reuse, say)})

    lr = planned_lr(out / "runs" / f"glmtune-s{seeds[0]}")
    torture_runs = []
    for factor in TORTURE_FACTORS:
        for guard in (True, False):
            name = f"torture-x{factor}-guard-{'on' if guard else 'off'}"
            cfg = glmtune_config(base, train_file, out / "runs" / name, seeds[0], learning_rate=lr * factor,
                                 max_steps=TORTURE_STEPS, early_stopping=False)
            cfg["stability"] = {"enabled": guard}
            say(f"torture: lr {lr * factor:g}, guard {'on' if guard else 'off'}")
            torture_runs.append({"factor": factor, "lr": lr * factor, "guard": guard,
                                 **run_one(name, cfg, base, heldout, args.reuse, say)})

    results = {
        "machine": machine(),
        "settings": {"base": "QUICK_BASE" if args.quick else "FULL_BASE", "base_dir": str(base), "seeds": seeds,
                     "base_build": read_build_info(base),
                     "official_steps": args.official_steps, "train_samples": TRAIN_SAMPLES,
                     "heldout_samples": len(heldout), "selection_seed": SELECTION_SEED, "ema_beta": EMA_BETA,
                     "final_window": FINAL_WINDOW, "torture_steps": TORTURE_STEPS},
        "sweep": sweep,
        "torture": {"planned_lr": lr, "seed": seeds[0], "runs": torture_runs},
        "base_heldout_loss": heldout_loss(base, base, heldout),
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    report = render(results)
    (out / "stability.md").write_text(report, encoding="utf-8")
    print(report)
    say(f"wrote {out / 'results.json'} and {out / 'stability.md'} in {results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
