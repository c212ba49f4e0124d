"""Fixtures of the web UI tests: identity data with a broken line, and a UI server on a free port."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BROKEN_LINE = "{broken json\n"


def identity_file(path: Path, n: int = 30) -> Path:
    """``n`` identity conversations with {{name}}/{{author}} placeholders, then one malformed JSON line."""
    from glmtune.world import identity_finetune_set

    with path.open("w", encoding="utf-8") as fh:
        for messages in identity_finetune_set(n, "{{name}}", "{{author}}"):
            fh.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
        fh.write(BROKEN_LINE)
    return path


@pytest.fixture()
def identity_data(tmp_path: Path) -> Path:
    """30 identity conversations and a quarantined line 31."""
    return identity_file(tmp_path / "identity.jsonl")


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A running UI: its address, workspace and app."""

    url: str
    workdir: Path
    app: Any


def stop_runs(workdir: Path) -> None:
    """Kill any training a failed test left running."""
    import signal

    from glmtune.ui.runs import Launcher, list_runs
    from glmtune.ui.workspace import Workspace

    if not (workdir / "runs").is_dir():
        return
    for state in list_runs(Workspace(workdir)):
        if state.status == "running" and state.pid:
            Launcher._signal(state.pid, signal.SIGKILL)


@pytest.fixture()
def ui_server(tmp_path: Path) -> Iterator[Server]:
    """The UI on 127.0.0.1 and a free port, its workspace under ``tmp_path``."""
    pytest.importorskip("gradio", reason="the web UI needs gradio (pip install 'glmtune[ui]')")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from glmtune.ui.app import serve

    port = free_port()
    workdir = tmp_path / "ui"
    app = serve("127.0.0.1", port, None, str(workdir), block=False)
    try:
        yield Server(f"http://127.0.0.1:{port}/", workdir, app)
    finally:
        stop_runs(workdir)
        app.close()
