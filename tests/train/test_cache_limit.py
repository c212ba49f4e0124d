"""The tokenized-data cache stays under its size limit: least recently used entries go first, used ones stay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from glmtune.data.cache import list_cache, mark_used, prune_cache


def _entry(root: Path, name: str, size: int, age_s: float, source: str = "a.jsonl") -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "encoded.arrow").write_bytes(b"x" * size)
    (path / "meta.json").write_text(json.dumps({"source": source}))
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def test_prune_deletes_least_recently_used_first_and_keeps_entries_in_use(tmp_path: Path) -> None:
    old = _entry(tmp_path, "old", 4000, 300)
    mid = _entry(tmp_path, "mid", 4000, 200)
    new = _entry(tmp_path, "new", 4000, 100)
    mark_used(old)  # a cache hit makes the oldest entry the most recent
    assert [e.path.name for e in list_cache(tmp_path)] == ["mid", "new", "old"]
    freed = prune_cache(tmp_path, 9000, keep={mid})
    assert [e.path.name for e in freed] == ["new"]  # mid is in use, so the next least recent goes
    assert mid.is_dir() and old.is_dir() and not new.exists()
    assert prune_cache(tmp_path, 10**9) == []


def test_prune_removes_abandoned_builds_but_not_fresh_ones(tmp_path: Path) -> None:
    stale = tmp_path / "abc.tmp-1"
    fresh = tmp_path / "abc.tmp-2"
    for path in (stale, fresh):
        path.mkdir()
        (path / "conversations.arrow").write_bytes(b"x")
    os.utime(stale, (time.time() - 3 * 86400,) * 2)
    prune_cache(tmp_path, 10**9)
    assert not stale.exists() and fresh.is_dir()


def test_data_cache_cli_lists_and_prunes(tmp_path: Path) -> None:
    _entry(tmp_path, "one", 3 * 2**20, 200, "first.jsonl")
    _entry(tmp_path, "two", 3 * 2**20, 100, "second.jsonl")
    run = [sys.executable, "-m", "glmtune", "data", "cache", "--cache-dir", str(tmp_path)]
    listed = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "first.jsonl" in listed.stdout and "2 entries" in listed.stdout
    pruned = subprocess.run(run + ["--max-gb", "0.004"], capture_output=True, text=True, timeout=120)
    assert "deleted 1 entries" in pruned.stdout and "second.jsonl" in pruned.stdout
    assert not (tmp_path / "one").exists()
    cleared = subprocess.run(run + ["--clear"], capture_output=True, text=True, timeout=120)
    assert "0 entries" in cleared.stdout


def test_data_tokenize_and_cache_usage_errors(tmp_path: Path, tiny_model: Path) -> None:
    """A missing data file or a bad option is a one-line error with exit code 2, never a traceback."""
    base = [sys.executable, "-m", "glmtune", "data"]
    missing = subprocess.run(base + ["tokenize", "--model", str(tiny_model), "--data", str(tmp_path / "nope.jsonl"),
                                     "--out", str(tmp_path / "t.jsonl")], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "data file not found" in missing.stderr + missing.stdout
    assert "Traceback" not in missing.stderr
    for args in (["tokenize", "--model", str(tiny_model), "--data", "d", "--out", "o", "--num-proc", "x"],
                 ["cache", "--max-gb", "-1"]):
        bad = subprocess.run(base + args, capture_output=True, text=True, timeout=120)
        assert bad.returncode == 2 and "expected" in bad.stderr and "Traceback" not in bad.stderr
