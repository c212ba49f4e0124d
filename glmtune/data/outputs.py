"""Where commands write: check an output location before any work, and write files atomically.

Every command that writes checks its outputs first (``check_output``), so a read-only or impossible location is
an ``error: ...`` naming the path (exit 2) before minutes of work, not a traceback after them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from glmtune.errors import UserError

# OSError numbers that mean "this location cannot be written": reported as user errors, not tracebacks
WRITE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.EEXIST,
                          errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG})
MODEL_FILES = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin", "pytorch_model*.bin.index.json")


class OutputError(UserError):
    """An output path that cannot be written; the message names it."""


def _nearest_existing(path: Path) -> Path:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def check_output(path: str | Path, flag: str, kind: str = "file", overwrite: bool | None = None) -> Path:
    """Fail unless ``path`` (a ``file``, a ``dir`` or ``any``) can be created or written; ``flag`` names the option.

    ``overwrite`` (folders only): False refuses a non-empty folder, True allows it, None does not look."""
    out = Path(path).expanduser()
    if out.exists():
        if kind == "file" and out.is_dir():
            raise OutputError(f"{flag} {path} is a folder; give a file path")
        if kind == "dir" and not out.is_dir():
            raise OutputError(f"{flag} {path} is a file; give a folder")
        if kind == "dir" and overwrite is False and any(out.iterdir()):
            raise OutputError(f"{flag} {path} is not empty; choose another folder or pass --overwrite")
        target = out if out.is_dir() else out.parent
    else:
        target = _nearest_existing(out.parent if out.parent != out else out)
        if not target.is_dir():
            raise OutputError(f"cannot write {flag} {path}: {target} is a file, not a folder")
    if not os.access(target, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {flag} {path}: {target} is read-only (permission denied)")
    return out


def write_error(exc: OSError) -> str | None:
    """A one-line message for an OSError raised while writing (None when it is not a write problem)."""
    if exc.errno not in WRITE_ERRNOS:
        return None
    where = exc.filename if exc.filename is not None else "the output"
    verb = "write" if exc.errno in (errno.EROFS, errno.ENOSPC, errno.EDQUOT) else "access"
    return f"cannot {verb} {where}: {exc.strerror or exc}"


@contextlib.contextmanager
def atomic_write(path: str | Path, encoding: str = "utf-8") -> Iterator[IO[str]]:
    """Write ``path`` through a temporary file in the same folder, renamed into place only when complete."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def clear_model_files(folder: str | Path) -> list[Path]:
    """Delete weight files (safetensors, bin and their indexes) that a new model written to ``folder`` replaces."""
    removed: list[Path] = []
    for pattern in MODEL_FILES:
        for file in Path(folder).glob(pattern):
            file.unlink()
            removed.append(file)
    return removed
