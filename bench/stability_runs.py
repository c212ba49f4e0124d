"""The stability benchmark's runs and measurements: offline metrics on ``log.jsonl``, the data and configs of
each contestant, training one contestant and measuring its run folder (used by ``bench.stability``).
"""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "identity.json"
NAME, AUTHOR = "Nova", "Acme Lab"
TRAIN_SAMPLES = 30
SELECTION_SEED = 0  # which 30 of the 91 identity samples are trained on; the other 61 are held out
EMA_BETA = 0.9
FINAL_WINDOW = 10
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
            reuse: bool) -> dict[str, Any]:
    """Train one contestant, then measure it from its run folder; ``reuse`` keeps an earlier measurement."""
    from transformers import set_seed

    from glmtune.config.loader import validate_config
    from glmtune.log import capture
    from glmtune.train.recipe import train

    run_dir = Path(cfg["training"]["output_dir"])
    saved = run_dir / "bench_metrics.json"
    if reuse and saved.is_file():
        print(f"  {label}: reusing {saved}")
        return json.loads(saved.read_text())
    # The LoRA weights are drawn before the Trainer seeds itself: seed here, so that every contestant's
    # initial adapter depends on its seed alone, not on what ran earlier in this process.
    set_seed(int(cfg["training"]["seed"]))
    started = time.perf_counter()
    with capture([]) as lines:  # the run's messages go to train_output.txt
        train(validate_config(cfg, source=label), overwrite=True)
    wall = time.perf_counter() - started
    (run_dir / "train_output.txt").write_text("\n".join(map(str, lines)) + "\n", encoding="utf-8")
    metrics = measure(run_dir, base, heldout)
    metrics.update(label=label, wall_s=round(wall, 1))
    saved.write_text(json.dumps(metrics, indent=2))
    print(f"  {label}: {metrics['steps']} steps, max ratio {fmt_num(metrics['max_ratio'], 2)}, "
          f"final loss {fmt_num(metrics['final_loss'])}, held-out {fmt_num(metrics['heldout_loss'])}, "
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


def fmt_num(x: Any, digits: int = 3) -> str:
    """``x`` with ``digits`` decimals; "-" for None, ``nan``/``inf`` as Python writes them."""
    if x is None:
        return "-"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return f"{x:.{digits}f}"
