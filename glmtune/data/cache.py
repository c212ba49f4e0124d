"""Content hashes for the tokenized-data cache: input bytes, tokenizer, layout, options and encoding code."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import glmtune

DEFAULT_CACHE = Path("~/.cache/glmtune/datasets")
CACHE_ENV = "GLMTUNE_CACHE"
STALE_BUILD_S = 24 * 3600  # an unfinished build folder this old belongs to a crashed run
# Modules whose code decides what a sample's tokens are; editing any of them invalidates every cache entry.
ENCODING_CODE = ("data/read.py", "data/conversation.py", "data/placeholders.py", "data/formats",
                 "data/train_clean.py", "data/repair.py", "data/encoding.py", "identity_names.py",
                 "layout", "glm4_texts.py", "train/tokenize.py")


def cache_root(cache_dir: str | None) -> Path:
    """``data.cache_dir``, else ``$GLMTUNE_CACHE``, else ``~/.cache/glmtune/datasets``."""
    chosen = cache_dir or os.environ.get(CACHE_ENV) or str(DEFAULT_CACHE)
    return Path(chosen).expanduser()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks (remembered while size and mtime stay the same)."""
    stat = Path(path).stat()
    return _file_sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Hash of everything in a tokenizer that changes ids: its full definition, chat template and specials."""
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:  # slow (Python) tokenizers: the vocabulary stands in for the model file
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False).encode())
    digest.update(str(getattr(tokenizer, "chat_template", None)).encode())
    digest.update(json.dumps(getattr(tokenizer, "special_tokens_map", {}), sort_keys=True, default=str).encode())
    return digest.hexdigest()


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Hash of glmtune's version and the source of every module that shapes the encoded samples."""
    root = Path(glmtune.__file__).parent
    digest = hashlib.sha256(glmtune.__version__.encode())
    for name in ENCODING_CODE:
        target = root / name
        for path in sorted(target.rglob("*.py")) if target.is_dir() else [target]:
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def cache_key(parts: dict[str, Any]) -> str:
    """Stable hex key of a JSON-serialisable description of everything the result depends on."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:32]


@dataclass
class CacheEntry:
    """One finished cache entry: its folder, size on disk, last use and the file it was made from."""

    path: Path
    size: int
    last_used: float
    source: str


def entry_size(path: Path) -> int:
    """Bytes of every file under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def mark_used(entry: Path) -> None:
    """Record that ``entry`` was just used (its folder's modification time is the last use)."""
    try:
        os.utime(entry)
    except OSError:  # a read-only cache still serves; it just cannot track use
        pass


def list_cache(root: Path) -> list[CacheEntry]:
    """Finished entries under ``root``, least recently used first."""
    entries = []
    for path in root.iterdir() if root.is_dir() else []:
        meta = path / "meta.json"
        if path.is_dir() and meta.is_file():
            try:
                source = str(json.loads(meta.read_text()).get("source", "?"))
            except (OSError, ValueError):
                source = "?"
            entries.append(CacheEntry(path, entry_size(path), path.stat().st_mtime, source))
    return sorted(entries, key=lambda e: e.last_used)


def prune_cache(root: Path, max_bytes: int, keep: set[Path] | None = None) -> list[CacheEntry]:
    """Delete least recently used entries (never those in ``keep``) until the cache fits ``max_bytes``.

    Build folders abandoned by a crash (``*.tmp-*`` older than a day) are removed as well. Returns the entries
    deleted.
    """
    keep = {Path(p).resolve() for p in keep or set()}
    for tmp in root.glob("*.tmp-*") if root.is_dir() else []:
        if tmp.is_dir() and time.time() - tmp.stat().st_mtime > STALE_BUILD_S:
            shutil.rmtree(tmp, ignore_errors=True)
    entries = list_cache(root)
    total = sum(e.size for e in entries)
    removed = []
    for entry in entries:
        if total <= max_bytes:
            break
        if entry.path.resolve() in keep:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        total -= entry.size
        removed.append(entry)
    return removed
