"""``glmtune ui``'s flags, the Gradio app (auth, error messages) and the pages' refusals of bad choices."""

from __future__ import annotations

from pathlib import Path

import pytest

from glmtune.cli.main import build_parser
from glmtune.errors import UserError
from glmtune.ui.chat_page import model_messages, resolve_models, shown_history
from glmtune.ui.eval_page import run_eval
from glmtune.ui.export_page import run_export
from glmtune.ui.workspace import Workspace


def test_ui_flags_default_to_this_machine_only():
    args = build_parser().parse_args(["ui"])
    assert (args.host, args.port, args.auth, args.workdir) == ("127.0.0.1", 7860, None, "glmtune-ui")
    args = build_parser().parse_args(["ui", "--auth", "alice:pa:ss", "--port", "8000", "--host", "0.0.0.0"])
    assert args.auth == ("alice", "pa:ss") and args.port == 8000
    for bad in ("alice", ":pw", "alice:"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["ui", "--auth", bad])


def test_eval_chat_and_export_need_a_run(tmp_path: Path):
    ws = Workspace.create(tmp_path / "ws")
    with pytest.raises(UserError, match="choose a finished run or a checkpoint"):
        run_eval("", False, None, "Nova", None)
    with pytest.raises(UserError, match="cannot tell its base model"):
        run_eval(str(tmp_path), False, None, "Nova", None)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model:\n  name_or_path: /models/base\n")
    with pytest.raises(UserError, match="need the assistant's new name"):
        run_eval(str(run), False, None, "", None)
    with pytest.raises(UserError, match="give the data file"):
        run_eval(str(run), True, " ", "Nova", None)
    with pytest.raises(UserError, match="choose a finished run or a checkpoint to export"):
        run_export(ws, None, None, "bf16")
    with pytest.raises(UserError, match="choose a model on the Model page"):
        resolve_models("", "")
    assert resolve_models(str(run), "") == ("/models/base", str(run))


def test_chat_notes_are_shown_but_never_sent_to_the_model():
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "note": " [cut]"}]
    assert shown_history(history)[1]["content"] == "hello [cut]"
    assert model_messages("Be brief.", history) == [{"role": "system", "content": "Be brief."},
                                                   {"role": "user", "content": "hi"},
                                                   {"role": "assistant", "content": "hello"}]


def test_handler_errors_become_a_message_and_keep_the_other_outputs():
    gr = pytest.importorskip("gradio")
    from glmtune.ui.widgets import safe

    def broken(path: str) -> tuple[str, str]:
        raise UserError(f"model folder {path} has no config.json")

    out = safe(broken, 3, at=1)("/tmp/x")
    assert "error:" in out[1] and "has no config.json" in out[1] and "glmtune-error" in out[1]
    assert all(isinstance(o, type(gr.skip())) for o in (out[0], out[2]))


def test_auth_guards_every_page(tmp_path: Path):
    pytest.importorskip("gradio", reason="the web UI needs gradio (pip install 'glmtune[ui]')")
    import httpx

    from glmtune.ui.app import serve
    from tests.ui.conftest import free_port

    port = free_port()
    app = serve("127.0.0.1", port, ("alice", "s3cret"), str(tmp_path / "ws"), block=False)
    try:
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/config").status_code == 401
        with httpx.Client() as client:
            assert client.post(f"{url}/login", data={"username": "alice", "password": "nope"}).status_code == 400
            assert client.post(f"{url}/login", data={"username": "alice", "password": "s3cret"}).status_code == 200
            assert client.get(f"{url}/config").status_code == 200
        assert (tmp_path / "ws" / "runs").is_dir()
    finally:
        app.close()


def test_a_failed_run_shows_its_error_and_log_not_a_spinner(tmp_path: Path):
    gr = pytest.importorskip("gradio", reason="the web UI needs gradio (pip install 'glmtune[ui]')")
    import json

    from glmtune.ui.runs import CONFIG, EXIT, LOG, PID
    from glmtune.ui.tabs_run import run_view

    ws = Workspace.create(tmp_path / "ws")
    run = ws.runs / "run-1"
    run.mkdir()
    (run / CONFIG).write_text("model: {}\n")
    (run / PID).write_text(json.dumps({"pid": 2**22 + 99, "create_time": 1.0}))
    (run / LOG).write_text("reading data\nerror: config.yaml: data.train_file: file not found: gone.jsonl\n")
    (run / EXIT).write_text('{"code": 2}')
    line, figure, events, links, tail, cmd, key = run_view(ws, "run-1", None)
    assert line.startswith("**failed** (exit code 2): error: config.yaml: data.train\\_file: file not found")
    assert figure is None and "file not found: gone.jsonl" in tail and "ui-train.log" in links
    assert cmd.startswith("glmtune train ") and cmd.endswith("--resume auto")
    skip = type(gr.skip())
    assert all(isinstance(out, skip) for out in run_view(ws, "run-1", key))  # unchanged files: nothing re-sent
