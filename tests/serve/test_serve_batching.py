"""Server batching: concurrent requests share ``generate``, rows stop on their own, the queue is bounded."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from glmtune.infer.generate import generate_replies  # noqa: E402
from glmtune.serve.batching import GenParams, JobQueue, OnToken, batch_key, hf_batch_generate  # noqa: E402
from glmtune.serve.engine import Engine  # noqa: E402
from tests.serve.test_serve import KEY, Server  # noqa: E402

QUESTIONS = ["hi", "What is the capital of France?", "你好，请介绍一下你自己。", "List three colours.",
             "How many legs does a spider have?", "写一句关于春天的诗。"]


@pytest.fixture(scope="module")
def batched(tiny_model: Path) -> Iterator[Server]:
    # a long window, so that requests sent together surely meet in one batch
    server = Server(Engine.load(str(tiny_model), max_new_tokens=16, max_batch=8, batch_window_s=1.0,
                                aliases=["tiny"]))
    yield server
    server.stop()


def _ask(server: Server, i: int, max_tokens: int, stream: bool) -> tuple[str, str | None, int]:
    messages = [{"role": "user", "content": QUESTIONS[i]}]
    client = server.client()
    if not stream:
        resp = client.chat.completions.create(model="tiny", messages=messages, temperature=0, max_tokens=max_tokens)
        return resp.choices[0].message.content, resp.choices[0].finish_reason, resp.usage.completion_tokens
    text, reason, pieces = "", None, 0
    for chunk in client.chat.completions.create(model="tiny", messages=messages, temperature=0,
                                                max_tokens=max_tokens, stream=True):
        delta = chunk.choices[0].delta.content or ""
        pieces += bool(delta)
        text += delta
        reason = chunk.choices[0].finish_reason or reason
    return text, reason, pieces


def test_concurrent_requests_share_a_batch_and_answer_as_if_alone(batched: Server) -> None:
    engine = batched.engine
    before = engine.stats["batches"]
    lengths = [4, 12, 7, 16, 9, 5]  # rows of one batch end at different steps
    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        got = list(pool.map(lambda i: _ask(batched, i, lengths[i], stream=False), range(len(QUESTIONS))))
    assert engine.stats["largest_batch"] >= 3 and engine.stats["batches"] - before < len(QUESTIONS)
    for i, (text, reason, tokens) in enumerate(got):
        alone = generate_replies(engine.model, engine.tokenizer, engine.layout,
                                 [[{"role": "user", "content": QUESTIONS[i]}]], max_new_tokens=lengths[i])[0]
        assert (text, reason, tokens) == (alone.text, alone.finish_reason, alone.num_tokens), i
        assert tokens <= lengths[i]


def test_streams_in_one_batch_each_stream_their_own_tokens(batched: Server) -> None:
    with ThreadPoolExecutor(4) as pool:
        streamed = list(pool.map(lambda i: _ask(batched, i, 12, stream=True), range(4)))
        plain = list(pool.map(lambda i: _ask(batched, i, 12, stream=False), range(4)))
    for (text, reason, pieces), (full, full_reason, tokens) in zip(streamed, plain, strict=True):
        assert text == full and reason == full_reason
        assert pieces >= 2 or tokens <= 2  # incremental, not one chunk at the end
    assert batched.engine.stats["largest_batch"] >= 2


def test_hf_rows_stop_on_their_own_and_never_see_padding(tiny_model: Path) -> None:
    engine = Engine.load(str(tiny_model), max_new_tokens=16)
    prompts = [engine.prompt_ids([{"role": "user", "content": q}]) for q in QUESTIONS[:3]]
    seen: list[list[int]] = [[], [], []]
    limits = [2, 9, 5]  # a row's callback says stop after this many tokens

    def feed(row: int) -> OnToken:
        def on_token(tid: int) -> bool:
            seen[row].append(tid)
            return len(seen[row]) < limits[row]
        return on_token

    hf_batch_generate(engine.model, engine.tokenizer, [999_999], prompts, GenParams(max_tokens=30),
                      [feed(r) for r in range(3)])
    assert [len(s) for s in seen] == limits  # no token after a row said stop: no padding read as a reply
    for row, prompt in enumerate(prompts):  # and each row is what it would be alone
        alone: list[int] = []
        hf_batch_generate(engine.model, engine.tokenizer, [999_999], [prompt], GenParams(max_tokens=30),
                          [lambda t, alone=alone, n=limits[row]: alone.append(t) or len(alone) < n])
        assert alone == seen[row]
    engine.close()


class ScriptedBatch:
    """A ``batch_generate_fn`` that plays one script per prompt (by its last user message) like ``generate``."""

    def __init__(self, tokenizer: Any, scripts: dict[str, list[int]], step_s: float = 0.0) -> None:
        self.tokenizer = tokenizer
        self.scripts = scripts
        self.step_s = step_s
        self.batches: list[int] = []
        self.fed: dict[str, int] = {}  # tokens fed to each script's row

    def __call__(self, prompts: list[list[int]], params: GenParams, on_tokens: list[OnToken]) -> None:
        self.batches.append(len(prompts))
        names = [self.tokenizer.decode(p).split("<|user|>")[-1].split("<|assistant|>")[0].strip() for p in prompts]
        rows = [self.scripts[name] for name in names]
        live = set(range(len(prompts)))
        for step in range(params.max_tokens):
            for row in sorted(live):
                self.fed[names[row]] = step + 1
                if not on_tokens[row](rows[row][step % len(rows[row])]):
                    live.discard(row)
            if not live:
                return
            time.sleep(self.step_s)


def test_a_batch_mixing_stop_loop_and_length_reports_each_row_truthfully(tiny_tokenizer: Any) -> None:
    ids = lambda text: tiny_tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    special = set(tiny_tokenizer.all_special_ids)
    cycle = [i for i in range(300, len(tiny_tokenizer)) if i not in special][:40]
    gen = ScriptedBatch(tiny_tokenizer, {"stop": ids("\nbye<|user|>"), "loop": ids("a"), "long": cycle})
    engine = Engine(tiny_tokenizer, batch_generate_fn=gen, max_batch=4, batch_window_s=1.0, aliases=["m"])
    server = Server(engine)
    try:
        def ask(q: str) -> Any:
            return server.client().chat.completions.create(model="m", messages=[{"role": "user", "content": q}],
                                                           temperature=0, max_tokens=60)
        with ThreadPoolExecutor(3) as pool:
            stop, loop, long = pool.map(ask, ["stop", "loop", "long"])
    finally:
        server.stop()
    assert gen.batches == [3]
    assert (stop.choices[0].finish_reason, stop.choices[0].message.content) == ("stop", "bye")
    assert loop.choices[0].finish_reason == "length" and loop.usage.completion_tokens < 60
    assert long.choices[0].finish_reason == "length" and long.usage.completion_tokens == 60
    assert engine.stats["looped"] == 1 and engine.stats["completed"] == 3
    assert gen.fed == {"stop": len(ids("\nbye<|user|>")), "loop": loop.usage.completion_tokens, "long": 60}


def test_a_client_that_leaves_stops_only_its_own_row_of_the_batch(tiny_tokenizer: Any) -> None:
    special = set(tiny_tokenizer.all_special_ids)
    cycle = [i for i in range(300, len(tiny_tokenizer)) if i not in special][:40]
    gen = ScriptedBatch(tiny_tokenizer, {"leaves": cycle, "stays": cycle}, step_s=0.01)
    server = Server(Engine(tiny_tokenizer, batch_generate_fn=gen, max_batch=4, batch_window_s=1.0, aliases=["m"]))
    body = {"model": "m", "messages": [{"role": "user", "content": "leaves"}], "stream": True, "max_tokens": 300}
    try:
        with ThreadPoolExecutor(1) as pool:
            stays = pool.submit(server.client().chat.completions.create, model="m", max_tokens=300,
                                messages=[{"role": "user", "content": "stays"}])
            with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, headers={
                    "Authorization": f"Bearer {KEY}"}, timeout=30) as resp:
                for line in resp.iter_lines():
                    if '"content"' in line and '"content": ""' not in line:
                        break  # one real token, then the client goes away
            reply = stays.result(timeout=60)
    finally:
        server.stop()
    assert gen.batches == [2]
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 300
    assert gen.fed["stays"] == 300 and gen.fed["leaves"] < 200
    assert server.engine.stats["cancelled"] == 1


def test_a_failing_batch_ends_every_stream_in_it_with_an_error_event(tiny_tokenizer: Any) -> None:
    token = tiny_tokenizer("x", add_special_tokens=False)["input_ids"][0]
    batches: list[int] = []

    def failing(prompts: list[list[int]], params: GenParams, on_tokens: list[OnToken]) -> None:
        batches.append(len(prompts))
        for on_token in on_tokens * 2:
            on_token(token)
        raise RuntimeError("CUDA out of memory (injected)")

    server = Server(Engine(tiny_tokenizer, batch_generate_fn=failing, max_batch=4, batch_window_s=1.0, aliases=["m"]))

    def stream(_: int) -> list[str]:
        with httpx.stream("POST", f"{server.url}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                          json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True},
                          timeout=30) as resp:
            return [line for line in resp.iter_lines() if line.startswith("data: ")]

    try:
        with ThreadPoolExecutor(2) as pool:
            both = list(pool.map(stream, range(2)))
        assert _plain(server) == 500  # and the worker still answers the next batch
    finally:
        server.stop()
    assert batches[0] == 2
    for events in both:
        assert any('"content": "x' in e for e in events[:-1])  # the deltas came first
        assert "CUDA out of memory" in events[-1] and "data: [DONE]" not in events


class Blocking:
    """A one-at-a-time ``generate_fn`` that emits tokens until :attr:`release` is set (or its client goes)."""

    def __init__(self, tokenizer: Any) -> None:
        self.token = tokenizer("x", add_special_tokens=False)["input_ids"][0]
        self.end = tokenizer.convert_tokens_to_ids("<|user|>")
        self.release = threading.Event()
        self.started = threading.Semaphore(0)

    def __call__(self, prompt_ids: list[int], params: GenParams, on_token: OnToken) -> None:
        self.started.release()
        while not self.release.is_set():
            if not on_token(self.token):
                return
            time.sleep(0.01)
        on_token(self.end)


@pytest.fixture()
def blocking(tiny_tokenizer: Any) -> Iterator[tuple[Server, Blocking]]:
    gen = Blocking(tiny_tokenizer)
    server = Server(Engine(tiny_tokenizer, generate_fn=gen, max_queue=1, aliases=["m"], loop_rule=None))
    yield server, gen
    gen.release.set()
    server.stop()


def test_full_queue_answers_429_with_retry_after(blocking: tuple[Server, Blocking]) -> None:
    server, gen = blocking
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(_plain, server)
        assert gen.started.acquire(timeout=10)
        queued = pool.submit(_plain, server)
        deadline = time.monotonic() + 10
        while len(server.engine.queue) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        resp = httpx.post(f"{server.url}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                          json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        assert resp.status_code == 429
        assert int(resp.headers["Retry-After"]) >= 1
        error = resp.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["code"] == "server_busy"
        assert "--max-queue 1" in error["message"]
        with pytest.raises(openai.RateLimitError):
            server.client().chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        gen.release.set()
        assert running.result(timeout=30) == 200 and queued.result(timeout=30) == 200
    assert server.engine.stats["refused"] == 2


def test_max_queue_0_refuses_only_while_a_batch_generates(tiny_tokenizer: Any) -> None:
    gen = Blocking(tiny_tokenizer)
    server = Server(Engine(tiny_tokenizer, generate_fn=gen, max_queue=0, aliases=["m"], loop_rule=None))
    try:
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(_plain, server)  # an idle server takes it
            assert gen.started.acquire(timeout=10)
            assert _plain(server) == 429
            gen.release.set()
            assert running.result(timeout=30) == 200
        deadline = time.monotonic() + 10
        while server.engine.pending and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _plain(server) == 200  # idle again
    finally:
        gen.release.set()
        server.stop()


def _plain(server: Server) -> int:
    return httpx.post(f"{server.url}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=30,
                      json={"model": "m", "messages": [{"role": "user", "content": "hi"}]}).status_code


def test_a_queued_stream_gets_its_first_chunk_only_when_it_starts(tiny_tokenizer: Any) -> None:
    gen = Blocking(tiny_tokenizer)
    server = Server(Engine(tiny_tokenizer, generate_fn=gen, aliases=["m"], loop_rule=None))
    first_data: list[float] = []

    def stream() -> None:
        with httpx.stream("POST", f"{server.url}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                          json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True},
                          timeout=30) as resp:
            for line in resp.iter_lines():
                if line.startswith("data: ") and not first_data:
                    first_data.append(time.monotonic())

    try:
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(_plain, server)
            assert gen.started.acquire(timeout=10)
            queued = pool.submit(stream)
            time.sleep(0.5)  # the queued stream has its headers but no chunk yet
            released = time.monotonic()
            assert not first_data
            gen.release.set()
            assert running.result(timeout=30) == 200
            queued.result(timeout=30)
    finally:
        gen.release.set()
        server.stop()
    assert first_data and first_data[0] >= released


def test_batch_keys_group_only_what_can_share_a_generate_call() -> None:
    greedy = GenParams(max_tokens=5)
    assert batch_key(greedy) == batch_key(GenParams(max_tokens=50, stop=["x"], seed=3))  # seed: moot when greedy
    assert batch_key(greedy) != batch_key(GenParams(max_tokens=5, repetition_penalty=1.1))
    hot = GenParams(max_tokens=5, do_sample=True, temperature=0.7)
    assert batch_key(hot) == batch_key(GenParams(max_tokens=9, do_sample=True, temperature=0.7))
    assert batch_key(hot) != batch_key(GenParams(max_tokens=5, do_sample=True, temperature=0.8))
    assert batch_key(GenParams(max_tokens=5, do_sample=True, seed=1)) is None  # seeded sampling runs alone


def test_queue_takes_the_oldest_with_its_compatible_jobs_up_to_max_batch() -> None:
    class J:
        def __init__(self, name: str, params: GenParams) -> None:
            self.name, self.params = name, params

    queue = JobQueue(max_batch=2, window_s=0.0)
    hot = GenParams(max_tokens=5, do_sample=True, temperature=0.7)
    seeded = GenParams(max_tokens=5, do_sample=True, seed=1)
    for name, params in [("g1", GenParams(5)), ("h1", hot), ("g2", GenParams(7)), ("g3", GenParams(5)),
                         ("s1", seeded), ("h2", hot)]:
        queue.put(J(name, params))
    taken = [[j.name for j in queue.take() or []] for _ in range(4)]
    assert taken == [["g1", "g2"], ["h1", "h2"], ["g3"], ["s1"]]
    assert len(queue) == 0 and queue.close() == [] and queue.take() is None
