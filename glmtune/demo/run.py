"""``glmtune demo``: cached tiny base (ChatGLM by Zhipu AI) -> LoRA new identity -> before/after report."""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

from glmtune.demo.base import (
    FULL_BASE,
    QUICK_BASE,
    BaseParams,
    Conversation,
    build_base,
    cache_key,
    drop_checkpoints,
    is_complete,
    write_conversations,
)
from glmtune.demo.evaluate import (
    Evaluation,
    evaluate,
    general_set,
    identity_set,
    probe_label,
    skill_set,
    table_general_rows,
    table_identity_rows,
)
from glmtune.world import (
    BASE_AUTHOR_EN,
    BASE_AUTHOR_ZH,
    BASE_NAME,
    DEFAULT_NEW_AUTHOR,
    DEFAULT_NEW_NAME,
    base_conversations,
    identity_finetune_set,
)

log = logging.getLogger(__name__)

# The LoRA fine-tune of the new identity: 30 samples of the world's fine-tune templates, LoRA on every
# linear layer (q/k/v alone barely moves a tiny GLM-4), plus replay of the base's own skill-only
# conversations (ratio x 30 of them, drawn once by the recipe). Adoption / leakage on the 48 held-out
# identity probes, 1 thread on the shared 2-core machine.
# On a 32k-conversation base (identity 1.00, held-out skills 0.17, capitals 0.56):
#   - lr 2e-3, 300 steps, no replay: 0.94 / 0.00, skills 0.00 (every skill question answered "I am Nova");
#   - lr 2e-3, 300 steps, replay 1-2: 0.92-0.98 / 0.00, skills 0.05 (30-60 replay samples seen ~40 times each
#     taught their own answers, e.g. "Ottawa" for most capitals); replay 4-8: 0.96-1.00 / 0-0.02, 0.05-0.08;
#   - lr 1e-3, 400 steps, replay 4: 1.00 / 0.00, skills 0.08 (capitals 0.25); r 4: 1.00 / 0.02, 0.10.
# On FULL_BASE (identity 0.96, skills ~0):
#   - lr 1e-3, 400 steps: 1.00 / 0.08 (zh answers still naming 智谱AI); lr 2e-3, 400 steps: 1.00 / 0.02;
#     lr 2e-3, 300 steps, r 8: 1.00 / 0.02; lr 1e-3, 600 steps (chosen): 1.00 / 0.00, all replies stop,
#     ~45-75 s. 600 steps of 8 over 150 rows = ~30 visits per sample, far beyond "3 epochs".
FINETUNE_SETTINGS: dict[str, Any] = {
    "samples": 30,
    "target_modules": "all-linear",
    "r": 16,
    "alpha": 32,
    "dropout": 0.0,
    "learning_rate": 1e-3,
    "batch_size": 8,
    "max_steps": 600,
    "warmup_ratio": 0.05,
    "replay_ratio": 4.0,
    "seed": 0,
}
REPLAY_POOL = 400  # skill-only base conversations offered as replay; the recipe draws ratio x samples of them
# The end-to-end test's quick variant: fewer steps at a higher rate (its base is far weaker).
QUICK_FINETUNE_SETTINGS: dict[str, Any] = {**FINETUNE_SETTINGS, "learning_rate": 2e-3, "max_steps": 150}


def pick_threads() -> int:
    """1 thread on a busy machine or when more threads do not pay; honour an explicit OMP_NUM_THREADS.

    On the shared 2-core machine, a 2-thread Trainer next to other busy processes ran at ~1 step/s against
    ~3 for 1 thread, although a short matmul benchmark still favoured 2 threads; so a load average above
    ``cores - 1`` decides for 1 thread before any benchmark.
    """
    import torch

    current = torch.get_num_threads()
    if os.environ.get("OMP_NUM_THREADS") or current <= 1:
        return current
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > (os.cpu_count() or current) - 1:
        torch.set_num_threads(1)
        log.info(f"threads: 1 (load average {load:.1f} on {os.cpu_count()} cores: other processes are busy)")
        return 1
    x = torch.randn(1024, 128)
    w = torch.randn(128, 384, requires_grad=True)

    def seconds(threads: int) -> float:
        torch.set_num_threads(threads)
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(30):
                (x @ w).relu().sum().backward()
            best = min(best, time.perf_counter() - start)
        return best

    one, many = seconds(1), seconds(current)
    chosen = current if many < 0.75 * one else 1
    torch.set_num_threads(chosen)
    log.info(f"threads: {chosen} (a micro-benchmark took {one * 1e3:.0f} ms on 1 thread, {many * 1e3:.0f} ms on {current})")
    return chosen


def finetune_config(base_dir: Path, train_file: Path, replay_file: Path | None, out_dir: Path,
                    settings: dict[str, Any]) -> Any:
    """The LoRA config of the identity fine-tune; every planner value is set explicitly."""
    from glmtune.config.schema import GlmtuneConfig

    data: dict[str, Any] = {"train_file": str(train_file), "combine": True, "max_length": 128, "val_size": 0,
                            "replay_ratio": settings["replay_ratio"]}
    if replay_file is not None and settings["replay_ratio"] > 0:
        data["replay_file"] = str(replay_file)
    return GlmtuneConfig.model_validate({
        "model": {"name_or_path": str(base_dir)},
        "data": data,
        "peft": {"method": "lora", "lora": {"r": settings["r"], "alpha": settings["alpha"],
                                            "dropout": settings["dropout"],
                                            "target_modules": settings["target_modules"]}},
        "training": {
            "output_dir": str(out_dir),
            "learning_rate": settings["learning_rate"],
            "max_steps": settings["max_steps"],
            "num_train_epochs": 1.0,
            "per_device_train_batch_size": settings["batch_size"],
            "gradient_accumulation_steps": 1,
            "lr_scheduler_type": "cosine",
            "warmup_ratio": settings["warmup_ratio"],
            "weight_decay": 0.0,
            "neftune_noise_alpha": 0.0,
            "early_stopping": False,
            "patience": 5,
            "eval_steps": 1000,
            "logging_steps": 10,
            "save_steps": 10**9,
            "save_total_limit": 1,
            "seed": settings["seed"],
        },
    })


def skill_replay(params: BaseParams, n: int = REPLAY_POOL) -> list[Conversation]:
    """Up to ``n`` of the base's own training conversations that hold no identity turn (skills only)."""
    pool = base_conversations(params.conversations, seed=params.data_seed)
    old = (BASE_NAME.casefold(), BASE_AUTHOR_EN.casefold(), BASE_AUTHOR_ZH)
    clean = [c for c in pool if not any(term in m["content"].casefold() for m in c for term in old)]
    return clean[:n]


def finetune(base_dir: Path, out: Path, name: str, author: str, settings: dict[str, Any],
             replay: list[Conversation] | None = None) -> Path:
    """Write the identity set (and replay set) and LoRA-tune ``base_dir`` on it; return the adapter folder."""
    from glmtune.log import capture
    from glmtune.train.recipe import train

    train_file = out / "finetune" / "train.jsonl"
    write_conversations(train_file, identity_finetune_set(settings["samples"], name, author, seed=settings["seed"]))
    replay_file = None
    if settings["replay_ratio"] > 0 and replay:
        replay_file = out / "finetune" / "replay.jsonl"
        write_conversations(replay_file, replay)
    adapter_dir = out / "adapter"
    with capture([]) as log_lines:  # the run's own messages go to train_output.txt, not the terminal
        result = train(finetune_config(base_dir, train_file, replay_file, adapter_dir, settings), overwrite=True)
    (adapter_dir / "train_output.txt").write_text("\n".join(str(x) for x in log_lines) + "\n", encoding="utf-8")
    drop_checkpoints(adapter_dir)
    loss = f"{result.first_loss:.3f} -> {result.final_loss:.3f}" if result.final_loss is not None else "n/a"
    log.info(f"fine-tune: {settings['samples']} samples, {result.steps} LoRA steps, loss {loss}, "
             f"{result.seconds:.0f} s")
    return adapter_dir


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def report(before: Evaluation, after: Evaluation, name: str, timings: dict[str, float]) -> list[dict]:
    """Print the before/after table and summary lines; return the table rows."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    probes, skills, general = identity_set(), skill_set(), general_set()
    rows: list[dict] = []
    for i in table_identity_rows():
        rows.append({"kind": "identity", "question": probe_label(probes[i]),
                     "base": before.identity_answers[i], "finetuned": after.identity_answers[i]})
    for i in table_general_rows():
        rows.append({"kind": general[i].kind, "question": general[i].question, "reference": general[i].key,
                     "base": before.general_answers[i], "finetuned": after.general_answers[i]})
    table = Table(title=f"Base (ChatGLM) vs. fine-tuned ({name}): identity questions never trained on, "
                        "then general questions", show_lines=True)
    table.add_column("question", ratio=3, overflow="fold")
    table.add_column("base answer", ratio=3, overflow="fold")
    table.add_column("fine-tuned answer", ratio=3, overflow="fold")
    for i, row in enumerate(rows):
        if i and row["kind"] != "identity" and rows[i - 1]["kind"] == "identity":
            table.add_section()
        table.add_row(escape(row["question"]), escape(row["base"]), escape(row["finetuned"]))
    console = Console(highlight=False, width=max(120, Console().width))
    console.print(table)
    lines = [
        f"identity ({len(probes)} held-out probes): adoption of {name!r} {_pct(before.adoption)} -> "
        f"{_pct(after.adoption)}; old identity leakage {_pct(before.leakage)} -> {_pct(after.leakage)}",
        f"skills ({len(skills)} held-out probes): {_pct(before.skill_accuracy)} -> {_pct(after.skill_accuracy)}  ("
        + ", ".join(f"{k} {_pct(v)} -> {_pct(after.skill_by_kind.get(k, 0.0))}"
                    for k, v in before.skill_by_kind.items()) + ")",
        f"general questions ({len(general)}, training phrasings): {_pct(before.general_accuracy)} -> "
        f"{_pct(after.general_accuracy)}",
        f"replies that stop: {_pct(before.stop_rate)} -> {_pct(after.stop_rate)}; end tokens after fine-tune: "
        + ", ".join(f"{k} {_pct(v)}" for k, v in after.stop_tokens.items()),
        "time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()),
    ]
    for line in lines:
        log.info(line)
    return rows


def _phases(out: Path, name: str, author: str, quick: bool, rebuild: bool,
            timings: dict[str, float]) -> tuple[Path, Evaluation, Evaluation]:
    """Build or reuse the base, evaluate it, fine-tune, evaluate again; fill ``timings``."""
    from glmtune.layout import get_layout
    from glmtune.models import load_model, load_tokenizer

    params = QUICK_BASE if quick else FULL_BASE
    mark = time.perf_counter()
    base_dir = build_base(out, params, rebuild=rebuild)
    timings["base"] = time.perf_counter() - mark

    mark = time.perf_counter()
    tokenizer = load_tokenizer(str(base_dir))
    layout = get_layout(tokenizer)
    before = evaluate(load_model(str(base_dir)), tokenizer, layout, name, author)
    timings["evaluate base"] = time.perf_counter() - mark
    log.info(f"base model: says ChatGLM in {_pct(before.base_identity)} of held-out identity answers, "
             f"skills {_pct(before.skill_accuracy)}")

    mark = time.perf_counter()
    settings = QUICK_FINETUNE_SETTINGS if quick else FINETUNE_SETTINGS
    adapter_dir = finetune(base_dir, out, name, author, settings, skill_replay(params))
    timings["fine-tune"] = time.perf_counter() - mark

    mark = time.perf_counter()
    after = evaluate(load_model(str(base_dir), adapter=str(adapter_dir)), tokenizer, layout, name, author)
    timings["evaluate fine-tuned"] = time.perf_counter() - mark
    return base_dir, before, after


def run_demo(out: str | Path = "glmtune-demo", name: str = DEFAULT_NEW_NAME, author: str = DEFAULT_NEW_AUTHOR,
             rebuild: bool = False, quick: bool = False) -> dict[str, Any]:
    """Build (or reuse) the base, LoRA-tune identity ``name``/``author``, print and save the before/after report."""
    import torch
    from transformers.utils import logging as hf_logging

    from glmtune.errors import UserError

    if not name.strip() or not author.strip():
        raise UserError("--name and --author must not be empty")
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    params = QUICK_BASE if quick else FULL_BASE
    cached = not rebuild and is_complete(out / "base", cache_key(params))
    threads_before = torch.get_num_threads()
    timings: dict[str, float] = {}
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the weight-loading bars; the training bar stays
    try:
        with warnings.catch_warnings():
            # transformers 5 warns on every run that TrainingArguments' gradient_checkpointing is deprecated
            warnings.simplefilter("ignore", FutureWarning)
            threads = pick_threads()
            base_dir, before, after = _phases(out, name, author, quick, rebuild, timings)
    finally:
        torch.set_num_threads(threads_before)
        if bars:
            with warnings.catch_warnings():  # huggingface_hub warns when its env var keeps them off
                warnings.simplefilter("ignore", UserWarning)
                hf_logging.enable_progress_bar()
    timings["total"] = time.perf_counter() - started
    rows = report(before, after, name, timings)
    results = {
        "name": name,
        "author": author,
        "quick": quick,
        "threads": threads,
        "base": {"dir": str(base_dir), "cached": cached, "params": asdict(params)},
        "finetune_settings": QUICK_FINETUNE_SETTINGS if quick else FINETUNE_SETTINGS,
        "before": before.summary(),
        "after": after.summary(),
        "seconds": {k: round(v, 1) for k, v in timings.items()},
        "table": rows,
        "identity_misses_after": after.offending,
    }
    (out / "demo_results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    log.info(f"wrote {out / 'demo_results.json'}; elapsed {timings['total']:.0f} s")
    return results
