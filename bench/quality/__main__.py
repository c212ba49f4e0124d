"""``python -m bench.quality``: the identity-shift benchmark, four contestants, several variants and seeds."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.quality.base import QUALITY_BASE, quality_base
from bench.quality.contestants import CONTESTANTS, epoch_budget, train_contestant
from bench.quality.metrics import generate_all, probe_set, score
from bench.quality.report import aggregate, goal_check, render
from bench.quality.variants import GOAL_VARIANTS, VARIANTS, make_variant
from bench.stability import machine
from glmtune.demo.base import write_conversations
from glmtune.world import DEFAULT_NEW_AUTHOR, DEFAULT_NEW_NAME

RESULTS_MD = Path(__file__).resolve().parents[1] / "RESULTS.md"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__)
    p.add_argument("--variant", nargs="+", default=list(GOAL_VARIANTS), choices=[*VARIANTS, "all"],
                   help="fine-tune sets to run (default: the goal's n30 noisy tool)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per variant and contestant (default 3)")
    p.add_argument("--first-seed", type=int, default=0, help="run seeds first-seed .. seeds-1 (to add seeds later)")
    p.add_argument("--contestants", nargs="+", default=list(CONTESTANTS), choices=CONTESTANTS)
    p.add_argument("--probes", help="JSONL of identity probes ({'messages': [...]}) replacing the bundled ones")
    p.add_argument("--general", help="JSONL of general prompts with 'reference' replacing the bundled ones")
    p.add_argument("--name", default=DEFAULT_NEW_NAME, help="the new identity's name")
    p.add_argument("--author", default=DEFAULT_NEW_AUTHOR, help="the new identity's author")
    p.add_argument("--out", default="bench/out/quality", help="work folder (base cache, runs, results)")
    p.add_argument("--base-dir", help="use this model folder as the base instead of building the world's base")
    p.add_argument("--epochs", type=float, help="override the shared epoch budget (quick checks only)")
    p.add_argument("--reuse", action="store_true", help="keep runs whose metrics.json already exists")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: aggregate the runs whose metrics.json exists under --out")
    p.add_argument("--no-append", action="store_true", help="do not append the summary to bench/RESULTS.md")
    return p.parse_args(argv)


def peer_available(contestant: str) -> str | None:
    """None when the contestant can run, else why not."""
    if contestant in ("glmtune", "official"):
        return None
    try:
        from bench.peers.run import venv_python
    except ImportError as exc:
        return f"bench.peers is not available ({exc})"
    try:
        venv_python(contestant)
    except Exception as exc:  # a missing venv is reported, the other contestants still run
        return str(exc)
    return None


def run_one(args: argparse.Namespace, base: Path, probes: Any, base_gens: Any, variant: str, seed: int,
            contestant: str, params: int, out: Path) -> dict[str, Any]:
    """Train and score one (variant, seed, contestant); cached in its run folder's metrics.json."""
    run_dir = out / "runs" / variant / f"seed{seed}" / contestant
    saved = run_dir / "metrics.json"
    if (args.reuse or args.report_only) and saved.is_file():
        return json.loads(saved.read_text(encoding="utf-8"))
    if args.report_only:
        raise RuntimeError(f"no finished run in {run_dir} (--report-only)")
    convs = make_variant(variant, args.name, args.author, seed)
    train_file = out / "data" / f"{variant}-seed{seed}.jsonl"
    write_conversations(train_file, convs)
    epochs = args.epochs or epoch_budget(len(convs), params)
    trained = train_contestant(contestant, base, train_file, run_dir, seed, len(convs), epochs, args.name,
                               args.author, forced_epochs=args.epochs is not None)
    started = time.perf_counter()
    gens = generate_all(str(base), str(trained.adapter_dir),
                        str(trained.tokenizer_dir) if trained.tokenizer_dir else None, probes)
    metrics = score(gens, probes, args.name, args.author, base_gens)
    metrics.update(variant=variant, seed=seed, contestant=contestant, samples=len(convs), epochs=epochs,
                   steps=trained.steps, wall_s=trained.wall_s, max_spike=trained.max_spike,
                   final_loss=trained.final_loss, eval_s=round(time.perf_counter() - started, 1), notes=trained.notes)
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(metrics, indent=2, ensure_ascii=False), encoding="utf-8")
    return metrics


def main(argv: list[str] | None = None) -> int:
    """Build (or reuse) the base, run every contestant, write results.json / results.md, append RESULTS.md."""
    args = parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    variants = list(VARIANTS) if "all" in args.variant else args.variant
    out = Path(args.out)
    base = Path(args.base_dir) if args.base_dir else quality_base(out)
    from glmtune.train.plan_inputs import model_param_count

    params = model_param_count(str(base))
    probes = probe_set(args.probes, args.general)
    base_gens = generate_all(str(base), None, None, probes)
    base_scores = score(base_gens, probes, args.name, args.author)
    from bench.quality.metrics import DIAGNOSTIC_CONTEXTS, OLD_NAMES

    headline = [g for g, tag in zip(base_gens["identity"], probes.identity_tags) if tag not in DIAGNOSTIC_CONTEXTS]
    base_identity = sum(OLD_NAMES[0].casefold() in g.text.casefold() for g in headline) / max(1, len(headline))
    print(f"base: identity (names {OLD_NAMES[0]}) {base_identity:.2f}, "
          f"skills {base_scores['skill_accuracy']:.2f}, stop {base_scores['stop_rate']:.2f}")
    skipped = {c: why for c in args.contestants if (why := peer_available(c))}
    for c, why in skipped.items():
        print(f"skipping {c}: {why}")
    runs: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for seed in range(args.first_seed, args.seeds):  # seed-major: every variant has its first seed before any has a second
        for variant in variants:
            for contestant in [c for c in args.contestants if c not in skipped]:
                try:
                    m = run_one(args, base, probes, base_gens, variant, seed, contestant, params, out)
                except RuntimeError as exc:  # one contestant failing does not end the benchmark
                    print(f"{variant} seed {seed} {contestant}: FAILED: {exc}", flush=True)
                    failures.append({"variant": variant, "seed": seed, "contestant": contestant, "error": str(exc)})
                    continue
                runs.append(m)
                print(f"{variant} seed {seed} {contestant:12s} adoption {m['adoption']:.2f} leakage "
                      f"{m['leakage']:.2f} retention {m.get('skill_retention') or 0:.2f} stop {m['stop_rate']:.2f} "
                      f"loop {m['loop_rate']:.2f} spike {m['max_spike'] or 0:.2f} steps {m['steps']} "
                      f"{m['wall_s']:.0f} s", flush=True)
    agg = aggregate(runs)
    goals = goal_check(agg, tuple(v for v in variants if v in GOAL_VARIANTS))
    info = machine()
    header = (f"### Identity-shift quality benchmark, {info['date'][:10]}\n\nMachine: {info['nproc']} cores "
              f"({info['cpu']}), torch {info['torch']}. Base: {base} (identity "
              f"{base_identity:.2f}, skills {base_scores['skill_accuracy']:.2f} on {len(probes.skills)} questions"
              f"). {args.seeds} seed(s); new identity {args.name} / {args.author}; skipped: "
              f"{', '.join(f'{c} ({w})' for c, w in skipped.items()) or 'none'}; failed runs: {len(failures)}.")
    md = render(agg, goals, header)
    results = {"machine": info, "base": {"dir": str(base), "params": asdict(QUALITY_BASE), "scores": base_scores},
               "runs": runs, "failures": failures, "aggregate": agg, "goals": goals, "skipped": skipped}
    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    (out / "results.md").write_text(md + "\n", encoding="utf-8")
    print(md)
    if not args.no_append:
        with RESULTS_MD.open("a", encoding="utf-8") as fh:
            fh.write(f"\n{md}\n_(appended by `python -m bench.quality` at "
                     f"{datetime.datetime.now().astimezone().isoformat(timespec='minutes')})_\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
