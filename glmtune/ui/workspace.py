"""The UI's folder (models, uploaded data, plans, runs, exports) and the ``glmtune ...`` commands it shows."""

from __future__ import annotations

import hashlib
import html
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from glmtune.errors import UserError

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Workspace:
    """Where the UI keeps what it makes: ``models/``, ``data/``, ``checks/``, ``plans/``, ``runs/``, ``exports/``."""

    root: Path

    @classmethod
    def create(cls, root: str | Path) -> Workspace:
        """The workspace at ``root`` (an absolute path), its folders made."""
        ws = cls(Path(root).expanduser().resolve())
        for folder in (ws.models, ws.data, ws.checks, ws.plans, ws.runs, ws.exports):
            folder.mkdir(parents=True, exist_ok=True)
        return ws

    @property
    def models(self) -> Path:
        """Tiny models made from the Model page."""
        return self.root / "models"

    @property
    def data(self) -> Path:
        """Uploaded data files."""
        return self.root / "data"

    @property
    def checks(self) -> Path:
        """Quarantine and report files of data checks."""
        return self.root / "checks"

    @property
    def plans(self) -> Path:
        """Draft configs of the Plan page, one per run name."""
        return self.root / "plans"

    @property
    def runs(self) -> Path:
        """One folder per training run: its config, pid file, log and everything ``glmtune train`` writes."""
        return self.root / "runs"

    @property
    def exports(self) -> Path:
        """Merged models."""
        return self.root / "exports"

    def run_dir(self, name: str) -> Path:
        """The folder of run ``name`` (a clear error for a name that is not a plain folder name)."""
        return self.runs / check_run_name(name)

    def next_run_name(self) -> str:
        """``run-N`` for the smallest N that has neither a run folder nor a draft."""
        n = 1
        while (self.runs / f"run-{n}").exists() or (self.plans / f"run-{n}.yaml").exists():
            n += 1
        return f"run-{n}"

    def save_upload(self, path: str | Path) -> Path:
        """Copy an uploaded file into ``data/`` under its own name (a short hash added when the name is taken)."""
        src = Path(path)
        if not src.is_file():
            raise UserError(f"upload {src.name}: the file is gone (upload it again)")
        dest = self.data / safe_name(src.name)
        if dest.exists() and not same_bytes(dest, src):
            digest = hashlib.sha256(src.read_bytes()).hexdigest()[:8]
            dest = dest.with_name(f"{dest.stem}-{digest}{dest.suffix}")
        if not dest.exists():
            shutil.copyfile(src, dest)
        return dest


def check_run_name(name: str) -> str:
    """``name`` if it is a plain folder name (letters, digits, ``.``, ``_``, ``-``), else a ``UserError``."""
    name = (name or "").strip()
    if not RUN_NAME.match(name) or name in (".", ".."):
        raise UserError(f"run name {name!r}: use letters, digits, '.', '_' or '-' (at most 64), e.g. run-1")
    return name


def safe_name(name: str) -> str:
    """A file name with anything but letters, digits, ``.``, ``_`` and ``-`` replaced by ``_``."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name).lstrip(".")
    return cleaned or "upload"


def same_bytes(a: Path, b: Path) -> bool:
    """True when two files hold the same bytes."""
    return a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()


def shown(path: str | Path) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    p = Path(path)
    try:
        rel = p.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return str(p)
    return str(rel) if str(rel) != "." else "."


def command(*args: str | Path | None, width: int = 100) -> str:
    """A copyable ``glmtune ...`` shell command; ``None`` arguments are left out, paths shown short, and a long
    command continued on a new line (`` \\``) before each option."""
    parts = ["glmtune"] + [shown(a) if isinstance(a, Path) else a for a in args if a is not None]
    text = shlex.join(parts)
    if len(text) <= width:
        return text
    lines: list[list[str]] = [[]]
    for part in parts:
        if part.startswith("--") and lines[-1]:
            lines.append([])
        lines[-1].append(part)
    return " \\\n  ".join(shlex.join(line) for line in lines)


def split_paths(text: str | None) -> list[str]:
    """File paths typed one per line (blank lines ignored, ``~`` expanded)."""
    return [os.path.expanduser(line.strip()) for line in (text or "").splitlines() if line.strip()]


def error_text(exc: BaseException) -> str:
    """A one-paragraph message for an error shown on a page."""
    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        return f"cannot read or write{where}: {exc.strerror or exc}"
    return f"{exc.__class__.__name__}: {exc}"


def message(text: str, ok: bool = True) -> str:
    """HTML for a page's status line: green for done, red and ``error:`` for a problem."""
    body = html.escape(text).replace("\n", "<br>")
    if ok:
        return f'<div class="glmtune-msg glmtune-ok">{body}</div>'
    return f'<div class="glmtune-msg glmtune-error"><b>error:</b> {body}</div>'
