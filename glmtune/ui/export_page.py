"""Export page: merge a run's adapter into its base with ``export_model`` (as ``glmtune export`` does)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from glmtune.errors import UserError
from glmtune.ui.runs import base_model_of
from glmtune.ui.workspace import Workspace, command


@dataclass
class ExportView:
    """Where the merged model went and what is in it."""

    out: Path
    files: list[list[str]] = field(default_factory=list)  # file (inside out), size
    command: str = ""


def default_out(ws: Workspace, adapter: str) -> Path:
    """``exports/<run>`` (``exports/<run>-<checkpoint>`` for a checkpoint)."""
    folder = Path(adapter)
    name = f"{folder.parent.name}-{folder.name}" if folder.name.startswith("checkpoint-") else folder.name
    return ws.exports / name


def size_text(n: int) -> str:
    """A byte count for people."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)


def run_export(ws: Workspace, adapter: str | None, out: str | None, dtype: str, overwrite: bool = False,
               model: str | None = None) -> ExportView:
    """Merge ``adapter`` into its base model, written to ``out`` (default ``exports/<run>``)."""
    from glmtune.export.merge import export_model

    if not (adapter or "").strip():
        raise UserError("choose a finished run or a checkpoint to export")
    adapter = adapter.strip()
    base = base_model_of(adapter) or (model or "").strip()
    if not base:
        raise UserError(f"{adapter}: cannot tell its base model (no config.yaml); choose it on the Model page")
    target = Path(out.strip()).expanduser() if (out or "").strip() else default_out(ws, adapter)
    written = export_model(base, adapter, str(target), dtype=dtype, overwrite=overwrite)
    files = [[str(p.relative_to(written)), size_text(p.stat().st_size)]
             for p in sorted(written.rglob("*")) if p.is_file()]
    cmd = command("export", "--model", base, "--adapter", Path(adapter), "--out", target, "--dtype", dtype,
                  *(["--overwrite"] if overwrite else []))
    return ExportView(out=written, files=files, command=cmd)
