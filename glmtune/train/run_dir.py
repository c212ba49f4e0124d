"""The run's output folder: never overwrite a previous run by accident, resume only the same run (its
fingerprint), from its latest complete checkpoint."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from glmtune.config.schema import GlmtuneConfig
from glmtune.data.cache import file_sha256
from glmtune.errors import UserError

log = logging.getLogger(__name__)

FINGERPRINT = "run_fingerprint.json"


def prepare_output_dir(out: Path, overwrite: bool, resume: str | None) -> None:
    """Refuse a non-empty ``out`` unless overwriting (which clears it) or resuming."""
    if out.exists() and any(out.iterdir()) and not resume:
        if not overwrite:
            raise UserError(
                f"training.output_dir {out} is not empty; pass --overwrite to replace that run, "
                "or --resume auto to continue it"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def fingerprint(config: GlmtuneConfig, data_files: list[str]) -> dict[str, Any]:
    """What must not change between a run and its resumption: the config and the data bytes."""
    cfg = config.model_dump(mode="json")
    cfg["training"].pop("output_dir", None)
    for key in ("cache", "cache_dir", "num_proc"):  # where and how data is tokenized, not what it becomes
        cfg["data"].pop(key, None)
    return {"config": cfg, "data": data_hashes(data_files)}


def data_hashes(data_files: list[str]) -> dict[str, str]:
    """SHA-256 of each data file's bytes."""
    return {path: file_sha256(path) for path in data_files}


def check_data_unchanged(current: dict[str, Any]) -> None:
    """Fail when a data file changed while this run was reading it (the run would train on a mix)."""
    now = data_hashes(list(current["data"]))
    changed = [path for path, digest in current["data"].items() if now.get(path) != digest]
    if changed:
        raise UserError(f"data file {changed[0]} changed while this run was reading it; nothing was trained. "
                        "Start again once the file is final")


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): obj}


def check_fingerprint(out: Path, current: dict[str, Any], force: bool) -> None:
    """Fail with the differences when resuming with another config or other data, unless ``force``."""
    path = out / FINGERPRINT
    if not path.is_file():
        return
    old = _flatten(json.loads(path.read_text()))
    new = _flatten(current)
    diff = [f"  {k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if diff and not force:
        raise UserError("cannot resume: the config or the data changed since the run started (--force to resume "
                        "anyway):\n" + "\n".join(diff))


def write_fingerprint(out: Path, current: dict[str, Any]) -> None:
    """Record the run's fingerprint."""
    (out / FINGERPRINT).write_text(json.dumps(current, indent=1))


def readable(checkpoint: Path) -> bool:
    """True when the checkpoint's JSON state and safetensors headers parse."""
    from safetensors import safe_open

    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
        for weights in checkpoint.glob("*.safetensors"):
            with safe_open(str(weights), framework="pt") as fh:
                list(fh.keys())
    except Exception:  # any parse failure means the checkpoint cannot be trusted
        return False
    return True


def find_checkpoint(out: Path, resume: str) -> str | None:
    """The checkpoint to resume from: ``auto`` takes the latest complete one and warns about torn ones."""
    from glmtune.train.checkpoint_io import checkpoints, is_complete

    if resume != "auto":
        path = Path(resume)
        if not (path / "trainer_state.json").is_file():
            raise UserError(f"--resume {resume}: not a complete checkpoint (no trainer_state.json)")
        if not (is_complete(path) and readable(path)):
            raise UserError(f"--resume {resume}: the checkpoint is torn (files missing, truncated or unreadable)")
        return str(path)
    for path in reversed(checkpoints(out)):
        complete = is_complete(path)
        if complete and readable(path):
            return str(path)
        log.warning(f"warning: ignoring torn checkpoint {path} ({'unreadable' if complete else 'incomplete'} files)")
    log.info(f"no complete checkpoint in {out}; starting from the beginning")
    return None
