"""Crash-safe checkpoints: staged in a hidden folder, fsynced, renamed into place; rotation that keeps the best.

A checkpoint is written into ``.tmp-checkpoint-N`` next to the others. Once every file is on disk (fsynced),
a manifest listing each file and its size is written last, and the folder is renamed to ``checkpoint-N``
with one atomic ``rename``, then the parent folder is fsynced. A ``checkpoint-N`` folder is therefore
always complete; a crash leaves at most a ``.tmp-checkpoint-N`` folder, which resuming removes.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from glmtune.errors import UserError

log = logging.getLogger(__name__)

PREFIX = "checkpoint-"
STAGING_PREFIX = ".tmp-checkpoint-"
TRASH_PREFIX = ".tmp-delete-"
MANIFEST = "glmtune_checkpoint.json"
GUARD_STATE = "guard_state.pt"
PAUSE_ENV = "GLMTUNE_FAULT_PAUSE_SAVE"  # test hook: "N" pauses the save of checkpoint-N before it is published


def checkpoint_step(path: Path) -> int | None:
    """The step number of a ``checkpoint-N`` folder, or None for any other name."""
    match = re.fullmatch(r"checkpoint-(\d+)", path.name)
    return int(match.group(1)) if match else None


def list_files(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` (relative path -> size in bytes)."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def is_complete(path: Path) -> bool:
    """True when a checkpoint has all its files: its manifest's sizes match (older ones: the key files exist)."""
    manifest = path / MANIFEST
    if manifest.is_file():
        try:
            files = json.loads(manifest.read_text())["files"]
        except (ValueError, KeyError, TypeError):
            return False
        return all((path / name).is_file() and (path / name).stat().st_size == size for name, size in files.items())
    return ((path / "trainer_state.json").is_file() and any(path.glob("*.safetensors"))
            and (path / "optimizer.pt").is_file())


def checkpoints(run_dir: Path) -> list[Path]:
    """The ``checkpoint-N`` folders in ``run_dir``, oldest step first."""
    found = [p for p in run_dir.glob(f"{PREFIX}*") if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=lambda p: checkpoint_step(p) or 0)


def latest_complete(run_dir: Path) -> Path | None:
    """The newest complete checkpoint in ``run_dir``."""
    done = [p for p in checkpoints(run_dir) if is_complete(p)]
    return done[-1] if done else None


def fsync_tree(folder: Path) -> None:
    """Flush every file under ``folder``, then the folders themselves, to disk."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for path in [*sorted(p for p in folder.rglob("*") if p.is_dir()), folder]:
        fsync_dir(path)


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (new names, renames) to disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(staging: Path, step: int, info: dict[str, Any]) -> None:
    """Write the manifest last: the files and sizes a complete checkpoint has, and what it records."""
    manifest = {"step": step, **info, "files": list_files(staging)}
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))


def publish(staging: Path, final: Path) -> None:
    """Make ``staging`` durable and rename it to ``final`` atomically (replacing an older ``final``)."""
    fsync_tree(staging)
    trash = None
    if final.exists():  # re-saving a step after resuming from an earlier checkpoint
        trash = final.with_name(f"{TRASH_PREFIX}{final.name}")
        shutil.rmtree(trash, ignore_errors=True)
        os.rename(final, trash)
    os.rename(staging, final)
    fsync_dir(final.parent)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def remove(path: Path) -> None:
    """Delete a checkpoint so that a crash midway never leaves a half-deleted ``checkpoint-N``."""
    trash = path.with_name(f"{TRASH_PREFIX}{path.name}")
    shutil.rmtree(trash, ignore_errors=True)
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def rotate(run_dir: Path, limit: int | None, best: str | Path | None) -> list[Path]:
    """Keep the newest ``limit`` complete checkpoints plus the best; never delete the best or the newest complete.

    Incomplete ``checkpoint-N`` folders (damaged by hand or written by older versions) are neither counted
    nor deleted. Returns the deleted folders.
    """
    if limit is None or limit <= 0:
        return []
    complete = [p for p in checkpoints(run_dir) if is_complete(p)]
    keep = set(complete[-limit:])
    if best is not None:
        keep.update(p for p in complete if p.resolve() == Path(best).resolve())
    deleted = [p for p in complete if p not in keep]
    for path in deleted:
        remove(path)
    return deleted


def clean_partial(run_dir: Path) -> list[Path]:
    """Remove staging and half-deleted folders left by a run that was killed while saving."""
    leftovers = sorted([*run_dir.glob(f"{STAGING_PREFIX}*"), *run_dir.glob(f"{TRASH_PREFIX}*")])
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
        log.info(f"removed {path}: a partial checkpoint left by an interrupted save")
    return leftovers


def fault_pause(step: int) -> None:
    """Test hook: with ``GLMTUNE_FAULT_PAUSE_SAVE=N``, the save of checkpoint-N stops here for an hour."""
    if os.environ.get(PAUSE_ENV) == str(step):
        time.sleep(3600)


def _errno_of(exc: BaseException) -> int | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno:
            return seen.errno
        match = re.search(r"(?:os error|code:)\s*(\d+)", str(seen))  # safetensors (Rust) I/O errors
        if match:
            return int(match.group(1))
        seen = seen.__cause__ or seen.__context__
    return None


def save_error(exc: BaseException, final: Path, previous: Path | None) -> BaseException:
    """A clear ``UserError`` for an I/O failure while saving ``final``; other errors are returned unchanged.

    Call it before removing the partial folder: torch.save reports a full disk without an errno
    ("iostream error"), so a disk with under 1 MiB free at that moment is taken as the cause.
    """
    code = _errno_of(exc)
    if code is None:
        try:
            if shutil.disk_usage(final.parent).free < 1 << 20:
                code = errno.ENOSPC
        except OSError:
            pass
    if code is None:
        return exc
    where = getattr(exc, "filename", None) or final.with_name(f"{STAGING_PREFIX}{checkpoint_step(final)}")
    meaning = f"{errno.errorcode.get(code, code)}: {os.strerror(code)}"
    kept = (f"the previous checkpoint {previous} is intact" if previous is not None
            else "no earlier checkpoint exists")
    hint = {errno.ENOSPC: "free some disk space", errno.EDQUOT: "free some quota",
            errno.EACCES: "check the folder's permissions", errno.EPERM: "check the folder's permissions",
            errno.EROFS: "write to a writable file system"}.get(code, "fix the problem")
    return UserError(f"could not save checkpoint {final} ({meaning}; at {where}); the partial checkpoint was "
                     f"removed and {kept}. {hint.capitalize()}, then continue with --resume auto")
