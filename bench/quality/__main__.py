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
from bench.quality.contestants import CONTESTANTS, PEER_SETTINGS, epoch_budget, peer_label, train_contestant
from bench.quality.depth import DEFAULT_DEPTHS, depth_metrics, name_diagnostics, old_identity_by_depth
from bench.quality.depth_report import by_token_count, render_depth_table
from bench.quality.metrics import generate_all, probe_set, score
from bench.quality.names import FORMS, RunIdentity, base_checker, seed_identities
from bench.quality.persona import make_persona, persona_scores
from bench.quality.report import aggregate, goal_check, render
from bench.quality.variants import GOAL_VARIANTS, VARIANTS, make_variant
from bench.stability import machine
from glmtune.demo.base import write_conversations
from glmtune.log import setup_logging

RESULTS_MD = Path(__file__).resolve().parents[1] / "RESULTS.md"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__)
    p.add_argument("--variant", nargs="+", default=list(GOAL_VARIANTS), choices=[*VARIANTS, "all"],
                   help="fine-tune sets to run (default: the goal's n30 noisy tool persona)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per variant and contestant (default 3)")
    p.add_argument("--first-seed", type=int, default=0, help="run seeds first-seed .. seeds-1 (to add seeds later)")
    p.add_argument("--contestants", nargs="+", default=list(CONTESTANTS), choices=CONTESTANTS)
    p.add_argument("--probes", help="JSONL of identity probes ({'messages': [...]}) replacing the bundled ones")
    p.add_argument("--general", help="JSONL of general prompts with 'reference' replacing the bundled ones")
    p.add_argument("--name", help="the new identity's name (default: an invented name the base never saw, drawn "
                   "per seed: latin, chinese, mixed for seeds 0, 1, 2, ...)")
    p.add_argument("--author", help="the new identity's author (default: drawn with the name)")
    p.add_argument("--name-form", choices=FORMS, help="draw every seed's name in this form instead")
    p.add_argument("--fixed-row", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the fixed Nova / Acme Lab pair (rows 'VARIANT@fixed'), for continuity")
    p.add_argument("--depths", type=int, nargs="+", default=list(DEFAULT_DEPTHS),
                   help="unrelated turns before the identity probes (default 0 3 8)")
    p.add_argument("--glmtune-set", nargs="+", metavar="SECTION.KEY=VALUE",
                   help="override glmtune's plan for a diagnostic run (use its own --out)")
    p.add_argument("--peer-lr-scales", type=float, nargs="+", default=[1.0],
                   help="run each peer at these multiples of its documented lr (e.g. 1 3 10; rows 'trl-x3')")
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
            contestant: str, params: int, out: Path, ident: RunIdentity) -> dict[str, Any]:
    """Train and score one (variant, seed, identity, contestant); cached in its run folder's metrics.json."""
    run_dir = out / "runs" / variant / f"seed{seed}" / ident.slug / contestant
    saved = run_dir / "metrics.json"
    if (args.reuse or args.report_only) and saved.is_file():
        return json.loads(saved.read_text(encoding="utf-8"))
    if args.report_only:
        raise RuntimeError(f"no finished run in {run_dir} (--report-only)")
    convs = make_variant(variant, ident.name, ident.author, seed)
    train_file = out / "data" / f"{variant}-seed{seed}-{ident.slug}.jsonl"
    write_conversations(train_file, convs)
    epochs = args.epochs or epoch_budget(len(convs), params)
    trained = train_contestant(contestant, base, train_file, run_dir, seed, len(convs), epochs, ident.name,
                               ident.author, forced_epochs=args.epochs is not None,
                               overrides=args.glmtune_set if contestant == "glmtune" else None)
    started = time.perf_counter()
    gens = generate_all(str(base), str(trained.adapter_dir),
                        str(trained.tokenizer_dir) if trained.tokenizer_dir else None, probes)
    metrics = score(gens, probes, ident.name, ident.author, base_gens)
    texts = [g.text for g in gens["identity"]]
    metrics["by_depth"] = depth_metrics(metrics["by_context"], tuple(args.depths))
    metrics["name_diagnostics"] = name_diagnostics(texts, probes.identity_tags, ident.name)
    if variant.startswith("persona"):
        persona = make_persona(ident.name, ident.author, seed)
        metrics["persona"] = persona_scores(persona, list(zip(probes.identity_tags, texts)),
                                            list(zip(probes.extra_tags, [g.text for g in gens["extra"]])))
        metrics["persona_def"] = {"traits": persona.traits, "sign_off": persona.sign_off}
    label = variant if ident.slug != "fixed" else f"{variant}@fixed"
    metrics.update(variant=label, seed=seed, contestant=contestant, samples=len(convs), epochs=epochs,
                   name=ident.name, author=ident.author, form=ident.form, name_tokens=ident.name_tokens,
                   glmtune_set=args.glmtune_set, steps=trained.steps, wall_s=trained.wall_s, max_spike=trained.max_spike,
                   final_loss=trained.final_loss, eval_s=round(time.perf_counter() - started, 1), notes=trained.notes)
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(metrics, indent=2, ensure_ascii=False), encoding="utf-8")
    return metrics


def contestant_labels(args: argparse.Namespace) -> list[str]:
    """The contestants to run, each peer once per ``--peer-lr-scales`` value."""
    return [peer_label(c, s) if c in PEER_SETTINGS else c for c in args.contestants
            for s in (args.peer_lr_scales if c in PEER_SETTINGS else [1.0])]


def run_all(args: argparse.Namespace, base: Path, probes: Any, base_gens: Any, variants: list[str], params: int,
            out: Path, skipped: dict[str, str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every (seed, variant, identity, contestant) run, seed-major; (finished runs, failures)."""
    checker = base_checker(base) if args.name is None or args.author is None else None
    runs: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for seed in range(args.first_seed, args.seeds):  # seed-major: every variant has its first seed before any has a second
        idents = seed_identities(seed, checker, args.name, args.author, args.fixed_row, args.name_form)
        for variant in variants:
            for ident in idents:
                for contestant in [c for c in contestant_labels(args) if c.split("-x")[0] not in skipped]:
                    try:
                        m = run_one(args, base, probes, base_gens, variant, seed, contestant, params, out, ident)
                    except RuntimeError as exc:  # one contestant failing does not end the benchmark
                        print(f"{variant} seed {seed} {ident.name} {contestant}: FAILED: {exc}", flush=True)
                        failures.append({"variant": variant, "seed": seed, "contestant": contestant,
                                         "name": ident.name, "error": str(exc)})
                        continue
                    runs.append(m)
                    depth = " ".join(f"@{d} {v['adoption']:.2f}/{v['leakage']:.2f}" for d, v in m["by_depth"].items())
                    print(f"{m['variant']} seed {seed} {ident.name} ({ident.name_tokens} tok) {contestant:12s} "
                          f"adoption {m['adoption']:.2f} leakage {m['leakage']:.2f} [{depth}] retention "
                          f"{m.get('skill_retention') or 0:.2f} stop {m['stop_rate']:.2f} loop {m['loop_rate']:.3f} "
                          f"steps {m['steps']} {m['wall_s']:.0f} s", flush=True)
    return runs, failures


def base_report(probes: Any, base_gens: Any) -> tuple[dict[str, Any], str]:
    """The base's own scores and a one-line summary: its identity (alone and per depth), skills, stopping."""
    from bench.quality.metrics import DIAGNOSTIC_CONTEXTS, OLD_NAMES
    from glmtune.world import DEFAULT_NEW_AUTHOR, DEFAULT_NEW_NAME

    scores = score(base_gens, probes, DEFAULT_NEW_NAME, DEFAULT_NEW_AUTHOR)
    headline = [g for g, tag in zip(base_gens["identity"], probes.identity_tags)
                if tag not in DIAGNOSTIC_CONTEXTS and not tag.startswith("depth")]
    scores["base_identity"] = sum(OLD_NAMES[0].casefold() in g.text.casefold() for g in headline) / max(1, len(headline))
    scores["base_identity_by_depth"] = old_identity_by_depth([g.text for g in base_gens["identity"]],
                                                             probes.identity_tags, OLD_NAMES[0])
    by_depth = " ".join(f"@{d} {v:.2f}" for d, v in scores["base_identity_by_depth"].items())
    line = (f"base: identity (names {OLD_NAMES[0]}) {scores['base_identity']:.2f} [{by_depth}], "
            f"skills {scores['skill_accuracy']:.2f}, stop {scores['stop_rate']:.2f}")
    return scores, line


def write_results(args: argparse.Namespace, out: Path, base: Path, probes: Any, variants: list[str],
                  base_scores: dict[str, Any], runs: list[dict[str, Any]], failures: list[dict[str, Any]],
                  skipped: dict[str, str]) -> str:
    """results.json, results.md and (unless --no-append) the RESULTS.md entry; returns the markdown."""
    agg = aggregate(runs)
    goals = goal_check(agg, tuple(v for v in variants if v in GOAL_VARIANTS))
    info = machine()
    names = sorted({f"{r['name']} / {r['author']}" for r in runs}) or [f"{args.name} / {args.author}"]
    header = (f"### Identity-shift quality benchmark, {info['date'][:10]}\n\nMachine: {info['nproc']} cores "
              f"({info['cpu']}), torch {info['torch']}. Base: {base} (identity "
              f"{base_scores['base_identity']:.2f}, by depth {base_scores['base_identity_by_depth']}, skills "
              f"{base_scores['skill_accuracy']:.2f} on {len(probes.skills)} questions). {args.seeds} seed(s); "
              f"identities: {', '.join(names)}; skipped: "
              f"{', '.join(f'{c} ({w})' for c, w in skipped.items()) or 'none'}; failed runs: {len(failures)}.")
    depths = tuple(args.depths)
    md = render(agg, goals, header) + "\n" + render_depth_table(runs, depths, "Per depth (issue 25):") + \
        "\nAdoption by the name's token count:\n\n" + by_token_count(runs, depths)
    results = {"machine": info, "base": {"dir": str(base), "params": asdict(QUALITY_BASE), "scores": base_scores},
               "runs": runs, "failures": failures, "aggregate": agg, "goals": goals, "skipped": skipped}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    (out / "results.md").write_text(md + "\n", encoding="utf-8")
    if not args.no_append:
        with RESULTS_MD.open("a", encoding="utf-8") as fh:
            fh.write(f"\n{md}\n_(appended by `python -m bench.quality` at "
                     f"{datetime.datetime.now().astimezone().isoformat(timespec='minutes')})_\n")
    return md


def main(argv: list[str] | None = None) -> int:
    """Build (or reuse) the base, run every contestant, write results.json / results.md, append RESULTS.md."""
    args = parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    variants = list(VARIANTS) if "all" in args.variant else args.variant
    out = Path(args.out)
    setup_logging()  # quality_base's progress lines
    base = Path(args.base_dir) if args.base_dir else quality_base(out)
    from glmtune.train.plan_inputs import model_param_count

    params = model_param_count(str(base))
    probes = probe_set(args.probes, args.general, tuple(args.depths), persona=any(v.startswith("persona") for v in variants))
    base_gens = generate_all(str(base), None, None, probes)
    base_scores, line = base_report(probes, base_gens)
    print(line, flush=True)
    skipped = {c: why for c in args.contestants if (why := peer_available(c))}
    for c, why in skipped.items():
        print(f"skipping {c}: {why}")
    runs, failures = run_all(args, base, probes, base_gens, variants, params, out, skipped)
    print(write_results(args, out, base, probes, variants, base_scores, runs, failures, skipped))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
