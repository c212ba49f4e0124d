"""Content hashes for the tokenised-data cache: input bytes, tokenizer, layout, options and encoding code."""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import glmtune

DEFAULT_CACHE = Path("~/.cache/glmtune/datasets")
CACHE_ENV = "GLMTUNE_CACHE"
# Modules whose code decides what a sample's tokens are; editing any of them invalidates every cache entry.
ENCODING_CODE = ("data/read.py", "data/conversation.py", "data/placeholders.py", "data/formats",
                 "layout", "train/tokenize.py")


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
