"""Server API strictness: model names, unknown and unsupported fields, tool-message order, ``serve`` CLI errors."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from glmtune.cli.main import main as cli_main  # noqa: E402
from glmtune.serve.engine import Engine, default_names  # noqa: E402
from tests.serve.test_serve import KEY, WEATHER_TOOL, FakeGenerator, Server  # noqa: E402

HI = [{"role": "user", "content": "hi"}]
AUTH = {"Authorization": f"Bearer {KEY}"}


class Capture:
    """ASGI wrapper that keeps every request body the server receives."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        chunks: list[bytes] = []

        async def tap() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body") and scope.get("method") == "POST":
                    self.bodies.append(json.loads(b"".join(chunks)))
            return message

        await self.app(scope, tap if scope["type"] == "http" else receive, send)


@pytest.fixture(scope="module")
def served(tiny_tokenizer: Any) -> Iterator[tuple[Server, FakeGenerator, Capture]]:
    gen = FakeGenerator(tiny_tokenizer)
    capture: list[Capture] = []
    engine = Engine(tiny_tokenizer, model_name="served", generate_fn=gen, aliases=["alias-a"])
    server = Server(engine, wrap=lambda app: capture.append(Capture(app)) or capture[0])
    yield server, gen, capture[0]
    server.stop()


def post(server: Server, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=AUTH, timeout=30)


# --- model names ---------------------------------------------------------------------------------------------


def test_served_name_and_aliases_answer_and_others_get_404(served: tuple[Server, FakeGenerator, Capture]) -> None:
    server, _, _ = served
    for name in ("served", "alias-a"):
        assert post(server, {"model": name, "messages": HI}).json()["model"] == "served"
    assert post(server, {"messages": HI}).status_code == 200  # absent: the one served model
    for body in ({"model": "gpt-4o", "messages": HI}, {"model": "Served", "messages": HI, "stream": True}):
        resp = post(server, body)
        assert resp.status_code == 404
        error = resp.json()["error"]
        assert error["code"] == "model_not_found" and error["param"] == "model"
        assert error["type"] == "invalid_request_error" and body["model"] in error["message"]
    with pytest.raises(openai.NotFoundError) as err:
        server.client().chat.completions.create(model="gpt-4o", messages=HI)
    assert err.value.code == "model_not_found"
    assert server.client().models.retrieve("alias-a").id == "served"
    with pytest.raises(openai.NotFoundError):
        server.client().models.retrieve("gpt-4o")


def test_a_loaded_model_answers_to_its_folder_the_given_path_and_extra_names(tiny_model: Path) -> None:
    engine = Engine.load(str(tiny_model), model_name="first", aliases=["second"])
    try:
        assert engine.model_name == "first"
        assert all(engine.accepts(n) for n in ("first", "second", tiny_model.name, str(tiny_model), None))
        assert not engine.accepts("glm-4-9b-chat")
    finally:
        engine.close()
    assert default_names("/runs/base/", None) == ["base", "/runs/base"]
    assert default_names("THUDM/glm-4-9b-chat", "/runs/out")[:2] == ["out", "/runs/out"]


# --- unknown and unsupported fields -------------------------------------------------------------------------


@pytest.mark.parametrize("extra, param, code", [
    ({"foo": 1}, "foo", "unknown_parameter"),
    ({"temprature": 0.5}, "temprature", "unknown_parameter"),
    ({"response_format": {"type": "json_object"}}, "response_format", "unsupported_parameter"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}, "response_format",
     "unsupported_parameter"),
    ({"logit_bias": {"15": 10}}, "logit_bias", "unsupported_parameter"),
    ({"functions": [WEATHER_TOOL["function"]]}, "functions", "unsupported_parameter"),
    ({"modalities": ["text", "audio"]}, "modalities", "unsupported_parameter"),
    ({"top_logprobs": 3}, "top_logprobs", "unsupported_parameter"),
])
def test_unknown_and_unsupported_fields_get_400(served: tuple[Server, FakeGenerator, Capture],
                                                extra: dict[str, Any], param: str, code: str) -> None:
    resp = post(served[0], {"model": "served", "messages": HI, **extra})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")


def test_harmless_and_off_values_are_accepted(served: tuple[Server, FakeGenerator, Capture]) -> None:
    body = {"model": "served", "messages": HI, "response_format": {"type": "text"}, "user": "u1",
            "metadata": {"k": "v"}, "store": False, "parallel_tool_calls": True, "service_tier": "auto",
            "logit_bias": {}, "modalities": ["text"], "logprobs": False, "n": 1}
    assert post(served[0], body).status_code == 200


def test_what_the_openai_client_sends_is_accepted(served: tuple[Server, FakeGenerator, Capture]) -> None:
    server, _, capture = served
    client = server.client()
    capture.bodies.clear()
    assert client.chat.completions.create(model="served", messages=HI).choices[0].message.content == "ok"
    list(client.chat.completions.create(model="served", messages=HI, stream=True,
                                        stream_options={"include_usage": True}))
    client.chat.completions.create(model="served", messages=HI, tools=[WEATHER_TOOL], temperature=0.2,
                                   max_completion_tokens=5, seed=1, stop=["x"], user="u")
    assert [sorted(b) for b in capture.bodies[:2]] == [["messages", "model"],
                                                       ["messages", "model", "stream", "stream_options"]]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="served", messages=HI, response_format={"type": "json_object"})
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="served", messages=HI, extra_body={"guided_json": {}})
    assert err.value.body["param"] == "guided_json"


# --- tool messages ----------------------------------------------------------------------------------------------

CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
ASKED = {"role": "assistant", "content": None, "tool_calls": [CALL]}


@pytest.mark.parametrize("messages, param", [
    ([*HI, {"role": "tool", "tool_call_id": "call_1", "content": "21"}], "messages.[1].role"),
    ([*HI, {"role": "assistant", "content": "sure"}, {"role": "tool", "tool_call_id": "call_1", "content": "21"}],
     "messages.[2].role"),
    ([*HI, ASKED, {"role": "tool", "tool_call_id": "call_9", "content": "21"}], "messages.[2].tool_call_id"),
    ([*HI, ASKED, {"role": "tool", "content": "21"}], "messages.[2].tool_call_id"),
    ([*HI, ASKED, {"role": "tool", "tool_call_id": "call_1", "content": "21"}, {"role": "user", "content": "and?"},
      {"role": "tool", "tool_call_id": "call_1", "content": "22"}], "messages.[4].role"),
])
def test_tool_message_without_its_call_gets_400(served: tuple[Server, FakeGenerator, Capture],
                                                messages: list[dict[str, Any]], param: str) -> None:
    resp = post(served[0], {"model": "served", "messages": messages, "tools": [WEATHER_TOOL]})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param


def test_tool_answers_to_parallel_calls_are_accepted(served: tuple[Server, FakeGenerator, Capture]) -> None:
    second = {**CALL, "id": "call_2", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}
    messages = [*HI, {"role": "assistant", "content": None, "tool_calls": [CALL, second]},
                {"role": "tool", "tool_call_id": "call_1", "content": "21"},
                {"role": "tool", "tool_call_id": "call_2", "content": "25"}]
    assert post(served[0], {"model": "served", "messages": messages, "tools": [WEATHER_TOOL]}).status_code == 200


# --- glmtune serve: flags ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("flags, says", [
    (["--port", "99999"], "--port: expected a port number from 1 to 65535, got '99999'"),
    (["--port", "0"], "--port"),
    (["--port", "http"], "--port"),
    (["--max-queue", "-1"], "--max-queue: expected an integer >= 0"),
    (["--max-batch", "0"], "--max-batch: expected an integer >= 1"),
    (["--batch-window-ms", "soon"], "--batch-window-ms"),
])
def test_bad_serve_flags_exit_2_with_a_message(flags: list[str], says: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["serve", "--model", "nowhere", *flags])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and says in err and "Traceback" not in err


def test_a_port_in_use_is_an_error_before_the_model_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli_main(["serve", "--model", str(tmp_path / "missing"), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot listen on 127.0.0.1:") and str(port) in err


def test_serve_port_99999_in_a_real_process() -> None:
    proc = subprocess.run([sys.executable, "-m", "glmtune", "serve", "--model", "x", "--port", "99999"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "error: argument --port" in proc.stderr and "Traceback" not in proc.stderr


def test_help_documents_batching_and_the_queue_bound(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for flag in ("--max-queue", "--max-batch", "--batch-window-ms", "--served-model-name", "429", "Retry-After"):
        assert flag in out
