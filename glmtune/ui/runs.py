"""Training runs as processes of their own: ``python -m glmtune train CONFIG --resume auto``, one at a time.

A run is a folder under the workspace's ``runs/``: ``ui-config.yaml`` (what it trains), ``ui-train.pid``,
``ui-train.log`` (the process's output), ``ui-train.exit`` (its exit code), ``ui-train.stop`` (the user stopped
it) and everything ``glmtune train`` writes there. The UI finds runs and their state from these files alone, so
a run survives a browser reload or a restart of the UI. The config sits inside the run folder, so the folder is
never empty and every start passes ``--resume auto``: it starts from the beginning when there is no checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import glmtune
from glmtune.errors import UserError
from glmtune.train.checkpoint_io import checkpoints, is_complete
from glmtune.ui.workspace import Workspace, command, shown

CONFIG, PID, LOG, EXIT, STOP = "ui-config.yaml", "ui-train.pid", "ui-train.log", "ui-train.exit", "ui-train.stop"
UI_FILES = frozenset({CONFIG, PID, LOG, EXIT, STOP})
STOP_WAIT_S = 30.0


@dataclass
class RunState:
    """A run folder and what it is doing: ``not started``, ``running``, ``finished``, ``stopped`` or ``failed``."""

    name: str
    path: Path
    status: str
    pid: int | None = None
    exit_code: int | None = None
    checkpoints: list[Path] = field(default_factory=list)  # complete ones, oldest first

    @property
    def has_adapter(self) -> bool:
        """True when the run saved its final adapter (or model)."""
        return (self.path / "adapter_config.json").is_file() or (self.path / "config.json").is_file()


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def alive(info: dict[str, Any] | None) -> bool:
    """True when the process a pid file names still runs (the same process: its start time matches)."""
    import psutil

    if not info or not isinstance(info.get("pid"), int):
        return False
    try:
        proc = psutil.Process(info["pid"])
        same = abs(proc.create_time() - float(info.get("create_time", 0))) < 1.0
        return same and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ValueError, TypeError):
        return False


def run_state(path: Path) -> RunState:
    """The state of the run in ``path``, from its files."""
    info, ended = read_json(path / PID), read_json(path / EXIT)
    code = ended.get("code") if ended else None
    done = [p for p in checkpoints(path) if is_complete(p)] if path.is_dir() else []
    if alive(info):
        status = "running"
    elif (path / "summary.json").is_file() and code in (None, 0):
        status = "finished"
    elif (path / STOP).is_file():
        status = "stopped"
    elif info is not None:
        status = "failed"
    else:
        status = "not started"
    return RunState(path.name, path, status, info.get("pid") if info else None, code, done)


def list_runs(ws: Workspace) -> list[RunState]:
    """Every run folder of the workspace, newest first."""
    found = [p for p in ws.runs.iterdir() if p.is_dir() and ((p / CONFIG).is_file() or (p / PID).is_file())]
    return [run_state(p) for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]


def running(ws: Workspace) -> RunState | None:
    """The run that is training now, if any."""
    return next((r for r in list_runs(ws) if r.status == "running"), None)


def train_command(run_dir: Path) -> list[str]:
    """The process a run is: ``python -m glmtune train RUN/ui-config.yaml --resume auto``."""
    return [sys.executable, "-m", "glmtune", "train", str(run_dir / CONFIG), "--resume", "auto"]


def shown_train_command(run_dir: Path) -> str:
    """The same command, ready to copy."""
    return command("train", run_dir / CONFIG, "--resume", "auto")


class Launcher:
    """Starts, resumes and stops runs; one run trains at a time in a workspace."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.lock = threading.Lock()
        self.procs: dict[Path, subprocess.Popen] = {}

    def start(self, run_name: str, config: dict[str, Any]) -> RunState:
        """Write ``config`` into a new run folder and start training it."""
        run_dir = self.ws.run_dir(run_name)
        with self.lock:
            self._refuse_second()
            if run_dir.exists() and any(p.name != CONFIG for p in run_dir.iterdir()):
                state = run_state(run_dir)
                raise UserError(f"run {run_name} already exists ({state.status}); resume it on the Train page, or "
                                "choose another run name on the Plan page")
            run_dir.mkdir(parents=True, exist_ok=True)
            config = {**config, "training": {**config.get("training", {}), "output_dir": str(run_dir)}}
            (run_dir / CONFIG).write_text("# written by glmtune ui\n" + yaml.safe_dump(
                config, sort_keys=False, allow_unicode=True), encoding="utf-8")
            return self._launch(run_dir)

    def resume(self, run_name: str) -> RunState:
        """Continue a stopped or failed run from its latest complete checkpoint."""
        run_dir = self.ws.run_dir(run_name)
        with self.lock:
            state = run_state(run_dir)
            if state.status == "running":
                raise UserError(f"run {run_name} is training already")
            self._refuse_second()
            if state.status == "finished":
                raise UserError(f"run {run_name} has finished; there is nothing to resume")
            if not (run_dir / CONFIG).is_file():
                raise UserError(f"run {run_name} has no {CONFIG}; start it from the Plan page")
            return self._launch(run_dir)

    def stop(self, run_name: str) -> RunState:
        """Interrupt a run (as Ctrl-C would); it can be resumed from its latest checkpoint."""
        run_dir = self.ws.run_dir(run_name)
        state = run_state(run_dir)
        if state.status != "running" or state.pid is None:
            raise UserError(f"run {run_name} is not training ({state.status})")
        (run_dir / STOP).write_text(f"{time.time()}\n", encoding="utf-8")
        self._signal(state.pid, signal.SIGINT)
        deadline = time.monotonic() + STOP_WAIT_S
        while time.monotonic() < deadline and alive(read_json(run_dir / PID)):
            time.sleep(0.2)
        if alive(read_json(run_dir / PID)):
            self._signal(state.pid, signal.SIGKILL)
            time.sleep(0.5)
        return run_state(run_dir)

    def _refuse_second(self) -> None:
        busy = running(self.ws)
        if busy is not None:
            raise UserError(f"run {busy.name} is training (pid {busy.pid}); one run trains at a time: stop it or "
                            "wait until it finishes. Nothing was started.")

    def _launch(self, run_dir: Path) -> RunState:
        import psutil

        for name in (EXIT, STOP):
            (run_dir / name).unlink(missing_ok=True)
        source = str(Path(glmtune.__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p)}
        with (run_dir / LOG).open("ab") as log:
            log.write(f"=== glmtune ui {time.strftime('%Y-%m-%d %H:%M:%S')}: {shown_train_command(run_dir)}\n"
                      .encode())
            log.flush()
            proc = subprocess.Popen(train_command(run_dir), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        try:
            created = psutil.Process(proc.pid).create_time()
        except psutil.Error:
            created = time.time()
        (run_dir / PID).write_text(json.dumps({"pid": proc.pid, "create_time": created, "started": time.time(),
                                               "command": shown_train_command(run_dir)}), encoding="utf-8")
        self.procs[run_dir] = proc
        threading.Thread(target=self._wait, args=(run_dir, proc), daemon=True).start()
        return run_state(run_dir)

    def _wait(self, run_dir: Path, proc: subprocess.Popen) -> None:
        code = proc.wait()
        (run_dir / EXIT).write_text(json.dumps({"code": code, "ended": time.time()}), encoding="utf-8")

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        try:
            if os.getpgid(pid) == pid:  # started in its own session: reach its workers too
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            pass


BAR = re.compile(r"^([^:|]{1,60}):\s+\d+%\|")  # a tqdm bar: "train:  45%|..."


def log_tail(run_dir: Path, lines: int = 12, max_bytes: int = 65536) -> str:
    """The last lines of a run's process output; a progress bar's redraws count as one line, its latest."""
    path = run_dir / LOG
    if not path.is_file():
        return ""
    with path.open("rb") as fh:
        fh.seek(max(0, path.stat().st_size - max_bytes))
        text = fh.read().decode("utf-8", errors="replace")
    rows: list[str] = []
    for row in (r.rstrip() for r in text.replace("\r", "\n").split("\n")):
        if not row.strip():
            continue
        bar = BAR.match(row)
        if bar and rows and rows[-1].startswith(bar.group(1) + ":"):
            rows[-1] = row
        else:
            rows.append(row)
    return "\n".join(rows[-lines:])


def failure_reason(run_dir: Path) -> str:
    """The ``error: ...`` line of a failed run (or the last line of its traceback)."""
    tail = log_tail(run_dir, lines=400).splitlines()
    errors = [row for row in tail if row.startswith("error:")]
    if errors:
        return errors[-1]
    traced = [row for row in tail if row and not row.startswith((" ", "\t", "Traceback"))]
    return traced[-1] if traced else "the process ended without finishing (see its log below)"


def base_model_of(adapter: str | Path) -> str | None:
    """The base model an adapter folder (a run or a checkpoint) was trained on, from its saved config."""
    folder = Path(adapter)
    for path in (folder / "config.yaml", folder / CONFIG, folder.parent / CONFIG):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            return str(data["model"]["name_or_path"])
        except (OSError, yaml.YAMLError, KeyError, TypeError):
            continue
    info = read_json(folder / "adapter_config.json")
    return str(info["base_model_name_or_path"]) if info and info.get("base_model_name_or_path") else None


def adapter_choices(ws: Workspace) -> list[tuple[str, str]]:
    """(label, folder) of every finished run and every complete checkpoint, newest run first."""
    out: list[tuple[str, str]] = []
    for state in list_runs(ws):
        if state.status == "finished" and state.has_adapter:
            out.append((f"{state.name} (finished)", str(state.path)))
        out += [(f"{state.name}/{c.name}", str(c)) for c in reversed(state.checkpoints)]
    return out


def describe(state: RunState) -> str:
    """One line about a run, for the Train page."""
    where = shown(state.path)
    if state.status == "running":
        return f"run {state.name} is training (pid {state.pid}) in {where}"
    if state.status == "failed":
        code = "unknown" if state.exit_code is None else state.exit_code
        return f"run {state.name} failed (exit code {code}): {failure_reason(state.path)}"
    last = f"; latest checkpoint {state.checkpoints[-1].name}" if state.checkpoints else ""
    return f"run {state.name} is {state.status} ({where}{last})"
