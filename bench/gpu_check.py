"""One-command GPU check: glmtune's training defaults against plain transformers + PEFT on one CUDA GPU.

On a dense GLM-4 of ~0.5B parameters and a small GLM-4.5-style MoE model (random init from a config, nothing
downloaded), in bf16 with LoRA r16 on every linear layer, the same seeded batches of ``--micro`` x ``--length``
tokens: tokens/s, peak memory (``torch.cuda.max_memory_allocated``) and the loss curve of

* plain: transformers' full-logits loss, no activation checkpointing (what the PEFT docs do);
* glmtune: the planner's defaults for this model and GPU (chunked loss, its checkpointing mode);
* each default switched: the chunked loss off, checkpointing none / selective / full, a 4-bit base (QLoRA),
  Liger kernels (when liger-kernel is installed), torch.compile (``--compile``);

with the planner's memory estimate beside every measured peak, the generation speed of ``glmtune predict``,
and two ``glmtune train`` runs on the tiny model through the real Trainer: QLoRA, and Liger when installed.
Writes ``results.json`` and ``results.md`` into ``--out``; refuses to start without CUDA.

    python -m bench.gpu_check [--out bench/out/gpu_check] [--steps 12] [--micro 4] [--length 1024] [--compile]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.gpu_check_runs import DENSE_SHAPE, MOE_SHAPE, Setting

ROOT = Path(__file__).resolve().parents[1]
LOSS_AGREEMENT = 0.05  # max |loss - plain loss| per step, in nats, for a full-precision base in bf16 autocast
NO_CUDA = ("bench.gpu_check needs a CUDA GPU, and torch {torch} sees none (torch.cuda.is_available() is False); "
           "run it on a GPU machine: python -m bench.gpu_check")


def dense_settings(defaults: dict[str, Any], liger: bool, compile_: bool) -> list[Setting]:
    """The dense model's rows: plain, glmtune's defaults, then each default switched (no duplicate of the defaults)."""
    mode = defaults["checkpointing"]
    rows = [Setting("plain transformers+PEFT", chunked=False, checkpointing=False, plain=True),
            Setting("glmtune defaults", chunked=defaults["chunked"], checkpointing=mode),
            Setting("chunked loss off", chunked=False, checkpointing=mode)]
    rows += [Setting(f"checkpointing {name}", chunked=defaults["chunked"], checkpointing=value)
             for name, value in (("none", False), ("selective", "selective"), ("full", True)) if value != mode]
    rows.append(Setting("QLoRA 4-bit base", chunked=defaults["chunked"], checkpointing=mode, quantization="4bit"))
    if liger:
        rows.append(Setting("Liger kernels", chunked=defaults["chunked"], checkpointing=mode, liger=True))
    if compile_:
        rows.append(Setting("torch.compile", chunked=defaults["chunked"], checkpointing=mode, compile=True))
    return rows


def agreement(rows: list[dict[str, Any]]) -> None:
    """Add to every row its largest per-step loss difference from the plain row, and whether it is within
    ``LOSS_AGREEMENT`` (not required of a quantized base, whose weights differ)."""
    plain = next((r for r in rows if r.get("plain") and "losses" in r), None)
    for row in rows:
        if plain is None or "losses" not in row:
            continue
        row["max_loss_diff"] = max(abs(a - b) for a, b in zip(row["losses"], plain["losses"]))
        row["losses_agree"] = row["max_loss_diff"] <= LOSS_AGREEMENT or row["quantization"] != "none"


def gib(n: float | None) -> str:
    """Bytes as GiB with two decimals ('-' when unknown)."""
    return "-" if not n else f"{n / 2**30:.2f}"


def table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown table lines: one row per setting."""
    lines = ["| setting | loss | checkpointing | base | tokens/s | peak GiB | planner GiB | planner / peak | "
             "max Δloss vs plain | final loss |", "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | failed: {r['error'][:200]} |  |  |  |  |  |  |  |  |")
            continue
        est = (r.get("estimate") or {}).get("total")
        ratio = f"{est / r['peak_bytes']:.2f}" if est and r["peak_bytes"] else "-"
        diff = f"{r['max_loss_diff']:.4f}" if "max_loss_diff" in r else "-"
        mode = {False: "none", True: "full"}.get(r["checkpointing"], r["checkpointing"])
        lines.append(f"| {r['name']} | {'chunked' if r['chunked'] else 'full logits'} | {mode} | "
                     f"{r['quantization'] if r['quantization'] != 'none' else 'bf16'} | {r['tokens_per_s']:,.0f} | "
                     f"{gib(r['peak_bytes'])} | {gib(est)} | {ratio} | {diff} | {r['losses'][-1]:.4f} |")
    return lines


def render(results: dict[str, Any]) -> str:
    """The Markdown report: machine, the dense and MoE tables, generation, the Trainer smoke runs, the verdict."""
    a = results["args"]
    out = [f"# GPU check, {results['date']}", "", f"Machine: {results['machine']}.", "",
           f"`python -m bench.gpu_check --steps {a['steps']} --micro {a['micro']} --length {a['length']}`: LoRA r16 on "
           f"every linear layer, bf16 autocast, {a['micro']} x {a['length']} tokens a step (first quarter of each row "
           f"masked as a prompt), tokens/s over the steps after {a['warmup']} warm-up steps.", ""]
    for kind in ("dense", "moe"):
        part = results[kind]
        out += [f"## {kind}: {part['params']:,} parameters", "",
                f"Planner's defaults: chunked loss {part['defaults']['chunked']}, checkpointing "
                f"{part['defaults']['checkpointing']}.", "", *table(part["rows"]), ""]
    gen = results.get("generation") or {}
    if gen.get("tokens_per_s"):
        out += ["## Generation (glmtune predict)", "", f"{gen['prompts']} prompts, batch {gen['batch_size']}, up to "
                f"{gen['max_new_tokens']} new tokens: {gen['tokens']:,} tokens in {gen['seconds']:.1f} s, "
                f"{gen['tokens_per_s']:,.0f} tokens/s.", ""]
    elif gen.get("error"):
        out += ["## Generation (glmtune predict)", "", f"failed: {gen['error']}", ""]
    out += ["## glmtune train through the Trainer (tiny model)", "", "| run | result |", "| --- | --- |"]
    out += [f"| {s['name']} | {s['result']} |" for s in results.get("smoke", [])]
    out += ["", f"Verdict: {results['verdict']}", ""]
    return "\n".join(out)


def verdict(results: dict[str, Any]) -> str:
    """One line: failures, disagreeing losses, and the planner's worst estimate against the measured peak."""
    rows = results["dense"]["rows"] + results["moe"]["rows"]
    failed = [r["name"] for r in rows if "error" in r] + [s["name"] for s in results.get("smoke", [])
                                                          if not s["result"].startswith("ok")]
    disagree = [r["name"] for r in rows if r.get("losses_agree") is False]
    ratios = [r["estimate"]["total"] / r["peak_bytes"] for r in rows if r.get("peak_bytes") and r.get("estimate")]
    parts = [f"failed: {', '.join(failed)}" if failed else "every setting ran",
             f"losses disagree: {', '.join(disagree)}" if disagree else
             f"loss curves agree within {LOSS_AGREEMENT} nats"]
    if ratios:
        parts.append(f"planner estimate / measured peak between {min(ratios):.2f} and {max(ratios):.2f}")
    return "; ".join(parts)


def smoke_train(out: Path, name: str, sets: list[str]) -> dict[str, str]:
    """``glmtune train`` with its planned defaults on the tiny model for 5 steps with ``sets`` overrides, in its own
    process."""
    folder = out / "smoke" / name.replace(" ", "-")
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"answer {i}"}]}
            for i in range(16)]
    (folder / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "c.yaml").write_text(f"model: {{name_or_path: {out / 'models' / 'tiny'}}}\n"
                                   f"data: {{train_file: {folder / 'd.jsonl'}, val_size: 0}}\n"
                                   f"training: {{output_dir: {folder / 'run'}, max_steps: 5, report_to: []}}\n")
    cmd = [sys.executable, "-m", "glmtune", "train", "--overwrite", str(folder / "c.yaml"), *sets]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        return {"name": name, "result": f"failed (exit {done.returncode}): {done.stderr.strip()[-400:]}"}
    last = [line for line in done.stdout.splitlines() if line.startswith("saved adapter")]
    return {"name": name, "result": "ok: " + (last[-1] if last else "trained")}


def check_model(out: Path, kind: str, shape: dict[str, int], args: argparse.Namespace, liger: bool) -> dict[str, Any]:
    """Every setting's row for one model."""
    import torch

    from bench.gpu_check_runs import build_model, make_batches, planned_defaults, train_run

    model_dir = build_model(out / "models", kind, shape, "cuda")
    memory = torch.cuda.get_device_properties(0).total_memory
    defaults = planned_defaults(model_dir, args.micro, args.length, memory)
    batches = make_batches(shape["vocab_size"], args.steps, args.micro, args.length)
    settings = dense_settings(defaults, liger, args.compile) if kind == "dense" else [
        Setting("plain transformers+PEFT", chunked=False, checkpointing=False, plain=True),
        Setting("glmtune defaults", chunked=defaults["chunked"], checkpointing=defaults["checkpointing"])]
    rows = []
    for setting in settings:
        print(f"{kind}: {setting.name} ...", flush=True)
        rows.append(train_run(setting, model_dir, batches, "cuda", args.warmup))
    agreement(rows)
    return {"params": defaults["params"], "defaults": defaults, "rows": rows, "model_dir": str(model_dir)}


def main(argv: list[str] | None = None) -> int:
    """Run every check and write ``results.json`` and ``results.md``; exit 2 without CUDA."""
    import torch

    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "gpu_check")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--micro", type=int, default=4)
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--compile", action="store_true", help="add a torch.compile row (compiling takes minutes)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(NO_CUDA.format(torch=torch.__version__), file=sys.stderr)
        return 2
    from bench.gpu_check_runs import generation_speed
    from bench.throughput import machine

    args.out.mkdir(parents=True, exist_ok=True)
    liger = importlib.util.find_spec("liger_kernel") is not None
    results: dict[str, Any] = {"date": datetime.date.today().isoformat(), "machine": machine("cuda"),
                               "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                               "versions": versions()}
    results["dense"] = check_model(args.out, "dense", DENSE_SHAPE, args, liger)
    results["moe"] = check_model(args.out, "moe", MOE_SHAPE, args, liger)
    try:
        results["generation"] = generation_speed(Path(results["dense"]["model_dir"]), args.out)
    except Exception as exc:  # noqa: BLE001 - reported in the results
        results["generation"] = {"error": f"{type(exc).__name__}: {str(exc)[:400]}"}
    results["smoke"] = [smoke_train(args.out, "QLoRA 4-bit", ["model.quantization=4bit"])]
    if liger:
        results["smoke"].append(smoke_train(args.out, "Liger kernels", ["training.liger_kernels=true"]))
    results["verdict"] = verdict(results)
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    report = render(results)
    (args.out / "results.md").write_text(report)
    print(report)
    return 0


def versions() -> dict[str, str]:
    """Versions of the packages the check exercises (absent ones as 'not installed')."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "liger-kernel"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


if __name__ == "__main__":
    sys.exit(main())
