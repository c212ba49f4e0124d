"""The OpenAI-compatible server: real ``openai`` client against uvicorn on loopback, tiny model and a fake one."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from glmtune.infer.generate import generate_replies  # noqa: E402
from glmtune.serve.app import create_app  # noqa: E402
from glmtune.serve.engine import Engine, GenParams, ReplyBuilder  # noqa: E402

KEY = "test-key"
SLOW = "<slow>"  # endless text that never loops (a 40-token cycle is longer than any n-gram the guard checks)
LOOP = "<loop>"  # the same token forever
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
HI = [{"role": "user", "content": "hi"}]


class Server:
    """uvicorn serving ``create_app(engine, KEY)`` in a background thread on a free loopback port."""

    def __init__(self, engine: Engine, wrap: Callable[[Any], Any] | None = None) -> None:
        import uvicorn

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.engine = engine
        self.url = f"http://127.0.0.1:{port}"
        app = create_app(engine, KEY)
        config = uvicorn.Config(wrap(app) if wrap else app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)

    def client(self, key: str = KEY) -> Any:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=60)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class FakeGenerator:
    """A ``generate_fn`` that "emits" scripted replies (special tokens included) and records each prompt."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.replies: list[str] = []
        self.prompts: list[str] = []
        self.slow_sent: list[int] = []
        self.slow_done = threading.Event()

    def __call__(self, prompt_ids: list[int], params: GenParams, on_token: Callable[[int], bool]) -> None:
        self.prompts.append(self.tokenizer.decode(prompt_ids))
        reply = self.replies.pop(0) if self.replies else "\nok<|user|>"
        if reply in (SLOW, LOOP):  # endless text until the server asks to stop
            if reply == LOOP:
                cycle = [self.tokenizer("a", add_special_tokens=False)["input_ids"][0]]
            else:
                special = set(self.tokenizer.all_special_ids)
                cycle = [i for i in range(300, len(self.tokenizer)) if i not in special][:40]
            sent = 0
            while sent < 3000 and on_token(cycle[sent % len(cycle)]):
                sent += 1
                time.sleep(0.005 if reply == SLOW else 0)
            self.slow_sent.append(sent)
            self.slow_done.set()
            return
        for tid in self.tokenizer(reply, add_special_tokens=False)["input_ids"]:
            if not on_token(tid):
                return


@pytest.fixture(scope="module")
def real(tiny_model: Path) -> Iterator[Server]:
    server = Server(Engine.load(str(tiny_model), max_new_tokens=16, aliases=["tiny"]))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fake_server(tiny_tokenizer: Any) -> Iterator[tuple[Server, FakeGenerator]]:
    gen = FakeGenerator(tiny_tokenizer)
    server = Server(Engine(tiny_tokenizer, model_name="fake-glm", generate_fn=gen, aliases=["m"]))
    yield server, gen
    server.stop()


@pytest.fixture()
def fake(fake_server: tuple[Server, FakeGenerator]) -> tuple[Server, FakeGenerator]:
    server, gen = fake_server
    gen.replies.clear()
    gen.prompts.clear()
    return server, gen


# --- the real tiny model -------------------------------------------------------------------------------------


def test_plain_completion_matches_batch_generation_and_counts_tokens(real: Server) -> None:
    resp = real.client().chat.completions.create(model="tiny", messages=HI, temperature=0, max_tokens=8)
    choice = resp.choices[0]
    assert choice.finish_reason in ("stop", "length")
    assert resp.model == real.engine.model_name and resp.object == "chat.completion"
    engine = real.engine
    assert resp.usage.prompt_tokens == len(engine.layout.prompt_ids(HI))
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    assert 1 <= resp.usage.completion_tokens <= 8
    if choice.finish_reason == "length":
        assert resp.usage.completion_tokens == 8
    expected = generate_replies(engine.model, engine.tokenizer, engine.layout, [HI], max_new_tokens=8)[0]
    assert choice.message.content == expected.text
    assert choice.finish_reason == expected.finish_reason
    assert resp.usage.completion_tokens == expected.num_tokens


def test_streaming_concatenates_to_the_full_text(real: Server) -> None:
    client = real.client()
    full = client.chat.completions.create(model="tiny", messages=HI, temperature=0, max_tokens=10)
    chunks = list(client.chat.completions.create(model="tiny", messages=HI, temperature=0, max_tokens=10,
                                                 stream=True, stream_options={"include_usage": True}))
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in with_choices) == full.choices[0].message.content
    assert with_choices[-1].choices[0].finish_reason == full.choices[0].finish_reason
    assert all(c.choices[0].finish_reason is None for c in with_choices[:-1])
    assert chunks[-1].usage is not None and chunks[-1].usage.model_dump() == full.usage.model_dump()


def test_seeded_sampling_repeats(real: Server) -> None:
    client = real.client()
    args: dict[str, Any] = {"model": "tiny", "messages": HI, "max_tokens": 6, "seed": 7, "temperature": 1.5}
    first = client.chat.completions.create(**args).choices[0].message.content
    assert client.chat.completions.create(**args).choices[0].message.content == first


def test_sixteen_concurrent_streams_all_finish(real: Server) -> None:
    def one(i: int) -> tuple[str, str | None]:
        stream = real.client().chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": f"question {i}"}], max_tokens=6, seed=i, stream=True)
        text, reason = "", None
        for chunk in stream:
            text += chunk.choices[0].delta.content or ""
            reason = chunk.choices[0].finish_reason or reason
        return text, reason

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(16)))
    assert all(reason in ("stop", "length") for _, reason in results)
    deadline = time.time() + 10  # the worker settles its count just after the last chunk is sent
    while real.engine.pending and time.time() < deadline:
        time.sleep(0.05)
    assert real.engine.pending == 0


def test_models_health_and_api_key(real: Server) -> None:
    assert httpx.get(f"{real.url}/health").json()["status"] == "ok"
    assert [m.id for m in real.client().models.list().data] == [real.engine.model_name]
    with pytest.raises(openai.AuthenticationError) as err:
        real.client("wrong").chat.completions.create(model="tiny", messages=HI, max_tokens=2)
    assert err.value.status_code == 401
    for headers in ({}, {"Authorization": f"Basic {KEY}"}, {"Authorization": "Bearer"}):
        resp = httpx.post(f"{real.url}/v1/chat/completions", json={"messages": HI}, headers=headers)
        assert resp.status_code == 401 and resp.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{real.url}/v1/models").status_code == 401


@pytest.mark.parametrize("body, param", [
    (b"{not json", None),
    (b"[1, 2]", None),
    (b'{"messages": []}', "messages"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "n": 2}', "n"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}', "temperature"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}', "max_tokens"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "stop": [""]}', "stop"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "tool_choice": "required"}', "tool_choice"),
    (b'{"messages": [{"role": "wizard", "content": "hi"}]}', None),
    (b'{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}', "messages"),
])
def test_bad_requests_get_openai_errors(real: Server, body: bytes, param: str | None) -> None:
    resp = httpx.post(f"{real.url}/v1/chat/completions", content=body,
                      headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param:
        assert error["param"].split(".")[0] == param


def test_n_2_through_the_client(real: Server) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        real.client().chat.completions.create(model="tiny", messages=HI, n=2)
    assert err.value.body["param"] == "n"


# --- a fake generator: tool calls, stop strings, disconnects --------------------------------------------------


def test_tool_call_round_trip(fake: tuple[Server, FakeGenerator]) -> None:
    server, gen = fake
    client = server.client()
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    gen.replies = ['get_weather\n{"city": "Paris"}<|observation|>']
    resp = client.chat.completions.create(model="m", messages=messages, tools=[WEATHER_TOOL])
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert "# 可用工具\n## get_weather\n" in gen.prompts[0] and gen.prompts[0].endswith("<|assistant|>")

    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'}]
    gen.replies = ["\nIt is 21 degrees in Paris.<|user|>"]
    resp = client.chat.completions.create(model="m", messages=messages, tools=[WEATHER_TOOL])
    assert resp.choices[0].finish_reason == "stop"
    assert resp.choices[0].message.content == "It is 21 degrees in Paris."
    assert gen.prompts[1].endswith(
        '<|user|>\nWeather in Paris?<|assistant|>get_weather\n{"city": "Paris"}<|observation|>\n{"temp": 21}'
        "<|assistant|>")


def test_streamed_tool_call(fake: tuple[Server, FakeGenerator]) -> None:
    server, gen = fake
    gen.replies = ['get_weather\n{"city": "巴黎"}<|observation|>']
    chunks = list(server.client().chat.completions.create(
        model="m", messages=[{"role": "user", "content": "?"}], tools=[WEATHER_TOOL], stream=True))
    calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(calls) == 1 and calls[0].function.name == "get_weather" and calls[0].id
    assert json.loads(calls[0].function.arguments) == {"city": "巴黎"}
    assert all(not c.choices[0].delta.content for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_choice_none_and_undeclared_names_give_text(fake: tuple[Server, FakeGenerator]) -> None:
    server, gen = fake
    client = server.client()
    gen.replies = ['get_weather\n{"city": "Paris"}<|observation|>', 'other_tool\n{"a": 1}<|observation|>']
    resp = client.chat.completions.create(model="m", messages=HI, tools=[WEATHER_TOOL], tool_choice="none")
    assert resp.choices[0].message.content == 'get_weather\n{"city": "Paris"}' and not resp.choices[0].message.tool_calls
    assert "可用工具" not in gen.prompts[0]
    resp = client.chat.completions.create(model="m", messages=HI, tools=[WEATHER_TOOL])
    assert resp.choices[0].finish_reason == "stop" and resp.choices[0].message.content.startswith("other_tool")


def test_stop_strings_cut_plain_and_streamed(fake: tuple[Server, FakeGenerator]) -> None:
    server, gen = fake
    client = server.client()
    gen.replies = ["\nHello world. END and more<|user|>"] * 2
    resp = client.chat.completions.create(model="m", messages=HI, stop=["END", "zzz"])
    assert resp.choices[0].message.content == "Hello world." and resp.choices[0].finish_reason == "stop"
    chunks = list(client.chat.completions.create(model="m", messages=HI, stop="END", stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello world."


def test_disconnect_stops_only_its_own_generation(fake: tuple[Server, FakeGenerator]) -> None:
    server, gen = fake
    gen.slow_done.clear()
    gen.replies = [SLOW, "\nsecond<|user|>"]
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {"messages": HI, "stream": True, "max_tokens": 5000}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, headers=headers, timeout=30) as r:
        lines = r.iter_lines()
        assert next(line for line in lines if line.startswith("data:"))
        with ThreadPoolExecutor(1) as pool:  # a second request queues behind the slow one
            other = pool.submit(server.client().chat.completions.create, model="m", messages=HI)
            time.sleep(0.2)
            r.close()
            assert gen.slow_done.wait(10)
            assert other.result(timeout=30).choices[0].message.content == "second"
    assert gen.slow_sent[-1] < 3000


def test_json_body_is_read_whatever_the_content_type(fake: tuple[Server, FakeGenerator]) -> None:
    server, _ = fake
    resp = httpx.post(f"{server.url}/v1/chat/completions", content=json.dumps({"messages": HI}),
                      headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"] == "ok"


def test_non_streamed_disconnect_stops_running_and_skips_queued(fake: tuple[Server, FakeGenerator]) -> None:
    server, gen = fake
    gen.slow_done.clear()
    gen.replies = [SLOW]
    engine = server.engine
    skipped = engine.stats["skipped"]
    client = server.client()
    with ThreadPoolExecutor(2) as pool:  # the queued client gives up first, while the slow one still runs
        running = pool.submit(client.with_options(timeout=1.0).chat.completions.create, model="m", messages=HI)
        deadline = time.monotonic() + 10
        while not gen.prompts and time.monotonic() < deadline:  # the slow job has started
            time.sleep(0.01)
        queued = pool.submit(client.with_options(timeout=0.3).chat.completions.create, model="m", messages=HI)
        for future in (running, queued):
            with pytest.raises(openai.APITimeoutError):
                future.result(timeout=30)
    assert gen.slow_done.wait(10) and gen.slow_sent[-1] < 3000
    deadline = time.monotonic() + 10
    while engine.stats["skipped"] == skipped and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.stats["skipped"] == skipped + 1 and len(gen.prompts) == 1


def test_reply_builder_holds_back_partial_stop_strings_and_whitespace(tiny_tokenizer: Any) -> None:
    ids = tiny_tokenizer("\n  abc XY-Z  tail", add_special_tokens=False)["input_ids"]
    builder = ReplyBuilder(tiny_tokenizer, [tiny_tokenizer.eos_token_id], max_tokens=100, stop=["XY-Z"])
    sent = []
    for tid in ids:
        sent.append(builder.add(tid))
        assert not "".join(sent).endswith((" ", "X", "XY"))
        if builder.finished:
            break
    sent.append(builder.close())
    assert "".join(sent) == builder.content == "abc" and builder.finish_reason == "stop"


# --- the repetition guard -----------------------------------------------------------------------------------


def test_looping_reply_is_cut_with_length_and_logged(fake: tuple[Server, FakeGenerator],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    server, gen = fake
    client = server.client()
    looped = server.engine.stats["looped"]
    gen.replies = [LOOP, LOOP]
    with caplog.at_level(logging.WARNING, logger="glmtune.serve"):
        resp = client.chat.completions.create(model="m", messages=HI, temperature=0, max_tokens=1000)
        chunks = list(client.chat.completions.create(model="m", messages=HI, temperature=0, max_tokens=1000,
                                                     stream=True, stream_options={"include_usage": True}))
    choice = resp.choices[0]
    assert choice.finish_reason == "length"
    assert resp.usage.completion_tokens <= 32 and gen.slow_sent[-2] <= 32  # well before max_tokens
    assert choice.message.content == "a" * resp.usage.completion_tokens
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[-1].choices[0].finish_reason == "length"
    assert chunks[-1].usage.completion_tokens == resp.usage.completion_tokens
    assert "".join(c.choices[0].delta.content or "" for c in with_choices) == choice.message.content
    assert server.engine.stats["looped"] == looped + 2
    warnings = [r.getMessage() for r in caplog.records if r.name == "glmtune.serve"]
    warnings = [w for w in warnings if "repetition guard" in w]
    assert len(warnings) == 2 and all(re.search(r"request chatcmpl-[0-9a-f]{24}\b", w) for w in warnings)
    logged = [re.search(r"request (chatcmpl-[0-9a-f]{24})", w).group(1) for w in warnings]
    assert logged == [resp.id, chunks[0].id]  # the log names the id the client got
    assert all(c.id == chunks[0].id for c in chunks)


def test_reply_builder_loop_guard(tiny_tokenizer: Any) -> None:
    from glmtune.infer.runaway import DEFAULT_LOOP_RULE

    cycle = tiny_tokenizer("x y z", add_special_tokens=False)["input_ids"]
    guarded = ReplyBuilder(tiny_tokenizer, [tiny_tokenizer.eos_token_id], 500, loop_rule=DEFAULT_LOOP_RULE)
    free = ReplyBuilder(tiny_tokenizer, [tiny_tokenizer.eos_token_id], 500)
    for builder in (guarded, free):
        for i in range(500):
            builder.add(cycle[i % len(cycle)])
            if builder.finished:
                break
        builder.close()
    assert guarded.looped and guarded.finish_reason == "length" and guarded.num_tokens < 40
    assert not free.looped and free.num_tokens == 500 and free.finish_reason == "length"
