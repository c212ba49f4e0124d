"""Tokenization benchmark: time and peak memory of glmtune's data pipeline as the data grows.

Synthetic multi-turn GLM-4 conversations (system prompts, tool calls and observations, bilingual text from
``glmtune.world.generic``; seeded) are written as JSONL; each size is the first N lines of one file. For every
size three runs go each into a fresh ``python -m bench.tokenize --child ...`` subprocess:

* ``loop``: the old in-process path (``bench.encode_loop.encode_sources_loop``: read every record into Python lists, one loop);
* ``cold``: the `datasets` path (``encode_sources``) on an empty cache: Arrow on disk, ``map`` with
  ``data.num_proc: auto``;
* ``warm``: the same again, served by the cache.

Each child reads, checks and encodes the file and then takes every sample's length, as ``glmtune train`` does
before planning. The parent samples the child and all its descendants every 50 ms (``/proc/PID/smaps_rollup``):
peak PSS (resident pages, each page shared between processes counted once over the tree, memory-mapped Arrow
files included) and peak anonymous PSS (``Pss_Anon``: heap memory that cannot be paged back to a file), each
summed over the process tree. PSS rather than RSS: ``map`` workers are forked, and summing their RSS would
count the parent's pages once per worker. The tokenizer is the tiny GLM-4's
(``glmtune make-tiny``; real GLM-4 templates, a 2k vocabulary, so more tokens per conversation than a real one).

    python -m bench.tokenize --sizes 10000 100000 1000000 --out bench/out/tokenize [--model DIR] [--loop-max N]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                           "parameters": {"type": "object", "properties": {
                                               "city": {"type": "string"}}, "required": ["city"]}}}]


def conversation(rng: random.Random) -> dict[str, Any]:
    """One synthetic GLM-4 conversation: 1-4 user/assistant rounds, sometimes a system prompt or a tool call."""
    from glmtune.world.generic import generic_sentence

    messages: list[dict[str, Any]] = []
    if rng.random() < 0.3:
        messages.append({"role": "system", "content": generic_sentence(rng)})
    if rng.random() < 0.15:
        messages.append({"role": "system", "content": "", "tools": TOOLS})
        city = rng.choice(["Paris", "北京", "Lima", "Oslo"])
        messages += [{"role": "user", "content": f"What is the weather in {city}?"},
                     {"role": "assistant", "metadata": "get_weather", "content": json.dumps({"city": city})},
                     {"role": "observation", "content": json.dumps({"city": city, "temp": rng.randint(-5, 30)})},
                     {"role": "assistant", "content": generic_sentence(rng)}]
        return {"messages": messages}
    for _ in range(rng.randint(1, 4)):
        messages.append({"role": "user", "content": " ".join(generic_sentence(rng) for _ in range(rng.randint(1, 2)))})
        messages.append({"role": "assistant", "content": " ".join(generic_sentence(rng)
                                                                   for _ in range(rng.randint(1, 3)))})
    return {"messages": messages}


def write_data(path: Path, n: int, seed: int = 0) -> None:
    """``n`` synthetic conversations as JSONL (skipped when the file already has them)."""
    if path.is_file() and sum(1 for _ in path.open("rb")) == n:
        return
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        for _ in range(n):
            fh.write(json.dumps(conversation(rng), ensure_ascii=False) + "\n")


def child(mode: str, data: str, model: str, cache: str) -> None:
    """Run one tokenization and print its result as JSON (runs inside the measured subprocess)."""
    from transformers import AutoTokenizer

    from bench.encode_loop import encode_sources_loop
    from glmtune.config.schema import DataSource
    from glmtune.layout import get_layout
    from glmtune.train.dataset import encode_sources

    layout = get_layout(AutoTokenizer.from_pretrained(model))
    started = time.perf_counter()
    common = {"combine": True, "max_length": 1025, "rejects_path": None, "truncation": "keep_recent"}
    if mode == "loop":
        enc = encode_sources_loop([DataSource(path=data)], layout, **common)
    else:
        enc = encode_sources([DataSource(path=data)], layout, cache_dir=cache, **common)
    lengths = enc.lengths
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "samples": len(lengths), "tokens": sum(lengths),
                      "trained_tokens": enc.result.trained_tokens}))


def tree_memory(proc: psutil.Process) -> tuple[int, int]:
    """(PSS, anonymous PSS) in bytes, summed over ``proc`` and its descendants."""
    pss = anon = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            with open(f"/proc/{p.pid}/smaps_rollup") as fh:
                fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh if line.startswith("Pss")}
        except (psutil.Error, OSError, ValueError):
            continue
        pss += fields.get("Pss", 0)
        anon += fields.get("Pss_Anon", 0)
    return pss, anon


def measure(mode: str, data: Path, model: str, cache: Path) -> dict[str, Any]:
    """Run one child and sample its memory until it exits."""
    cmd = [sys.executable, "-m", "bench.tokenize", "--child", mode, "--data", str(data), "--model", model,
           "--cache", str(cache)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watched = psutil.Process(proc.pid)
    peak_rss = peak_anon = peak_procs = 0
    while proc.poll() is None:
        rss, anon = tree_memory(watched)
        peak_rss, peak_anon = max(peak_rss, rss), max(peak_anon, anon)
        try:
            peak_procs = max(peak_procs, 1 + len(watched.children(recursive=True)))
        except psutil.Error:
            pass
        time.sleep(0.05)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{mode} on {data} failed:\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result.update(mode=mode, wall_s=round(time.perf_counter() - started, 2), peak_pss_mb=round(peak_rss / 2**20),
                  peak_anon_mb=round(peak_anon / 2**20), processes=peak_procs,
                  samples_per_s=round(result["samples"] / result["seconds"]),
                  tokens_per_s=round(result["tokens"] / result["seconds"]))
    return result


def machine() -> str:
    """CPU model, usable CPUs, RAM and load average."""
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    names = [line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")]
    cpus = len(os.sched_getaffinity(0))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{names[0] if names else 'unknown CPU'}, {cpus} usable CPUs, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, load average {load} at the end")


def table(results: list[dict[str, Any]]) -> str:
    """Markdown table of every run."""
    head = ("| conversations | path | processes | samples | tokens | time (s) | samples/s | tokens/s | peak PSS (MB) "
            "| peak anon PSS (MB) |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    return head + "\n".join(
        f"| {r['size']:,} | {r['mode']} | {r['processes']} | {r['samples']:,} | {r['tokens']:,} | {r['seconds']:.1f} | "
        f"{r['samples_per_s']:,} | {r['tokens_per_s']:,} | {r['peak_pss_mb']:,} | {r['peak_anon_mb']:,} |"
        for r in results)


def main(argv: list[str] | None = None) -> int:
    """Benchmark every size and mode; print the table, write results.json, append to bench/RESULTS.md."""
    parser = argparse.ArgumentParser(prog="python -m bench.tokenize", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--out", default="bench/out/tokenize")
    parser.add_argument("--model", help="tokenizer folder (default: a tiny GLM-4 built into --out)")
    parser.add_argument("--loop-max", type=int, default=10**9, help="skip the old loop above this size")
    parser.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    parser.add_argument("--json", help="results.json path, rewritten after every run (default: OUT/results.json)")
    parser.add_argument("--child", choices=["loop", "cold", "warm"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.data, args.model, args.cache)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = args.model
    if not model:
        from glmtune.tiny.model import make_tiny
        from glmtune.world import tokenizer_corpus

        model = str(out / "tiny") if (out / "tiny" / "tokenizer.json").is_file() else str(
            make_tiny(out / "tiny", corpus=tokenizer_corpus(0)))
    full = out / f"conversations_{max(args.sizes)}.jsonl"
    write_data(full, max(args.sizes))
    results = []
    for size in sorted(args.sizes):
        data = out / f"conversations_{size}.jsonl"
        if data != full:
            with full.open("rb") as src, data.open("wb") as dst:
                for i, line in enumerate(src):
                    if i >= size:
                        break
                    dst.write(line)
        cache = out / f"cache_{size}"
        shutil.rmtree(cache, ignore_errors=True)
        for mode in ("loop", "cold", "warm"):
            if mode == "loop" and size > args.loop_max:
                continue
            row = {"size": size, **measure(mode, data, model, cache)}
            results.append(row)
            Path(args.json or out / "results.json").write_text(json.dumps({"results": results}, indent=1))
            print(f"{size:>9,} {mode:<5} {row['seconds']:8.1f}s {row['samples_per_s']:>8,} samples/s "
                  f"{row['tokens_per_s']:>10,} tokens/s  peak PSS {row['peak_pss_mb']:,} MB "
                  f"(anon {row['peak_anon_mb']:,} MB)", flush=True)
        shutil.rmtree(cache, ignore_errors=True)
    where = machine()
    Path(args.json or out / "results.json").write_text(json.dumps({"machine": where, "results": results}, indent=1))
    text = table(results)
    print(text)
    day = datetime.date.today().isoformat()
    with open(args.results, "a", encoding="utf-8") as fh:
        fh.write(f"\n## Tokenization at scale ({day})\n\n`python -m bench.tokenize --sizes "
                 f"{' '.join(map(str, args.sizes))}` on {where}.\n\n{text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
