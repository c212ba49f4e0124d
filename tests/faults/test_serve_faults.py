"""Serving faults: a server killed mid-stream, and a generation that fails mid-stream."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from glmtune.serve.engine import Engine, GenParams  # noqa: E402
from tests.serve.test_serve import KEY, Server  # noqa: E402

HI = [{"role": "user", "content": "tell me a long story"}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_server_killed_mid_stream_gives_the_client_an_error(tiny_model: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "glmtune", "serve", "--model", str(tiny_model), "--port", str(port),
         "--max-new-tokens", "4000", "--model-name", "tiny"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0,
                               timeout=20.0)  # a number: openai>=3 takes its own httpx2.Timeout, not httpx's
        # sampled at temperature 1, the tiny model rambles on for thousands of tokens
        stream = client.chat.completions.create(model="tiny", messages=HI, stream=True, max_tokens=4000, seed=1)
        received: list[Any] = []
        started = time.monotonic()
        with pytest.raises(openai.APIConnectionError) as caught:
            for chunk in stream:
                received.append(chunk)
                if len(received) == 5:
                    proc.send_signal(signal.SIGKILL)
        assert time.monotonic() - started < 20  # an error, not a hang until the timeout
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    cause = caught.value.__cause__  # the transport's own account: the body ended before the response did
    assert type(cause).__name__ == "RemoteProtocolError" and "incomplete chunked read" in str(cause), repr(cause)
    assert len(received) >= 5
    assert all(c.choices[0].finish_reason is None for c in received)  # nothing looked like a finished answer


def failing_after(n: int, tokenizer: Any) -> Callable[[list[int], GenParams, Callable[[int], bool]], None]:
    """A generate_fn that emits ``n`` tokens, then fails as a real model can (e.g. out of memory)."""
    def generate(prompt_ids: list[int], params: GenParams, on_token: Callable[[int], bool]) -> None:
        for tid in tokenizer("one two three four five", add_special_tokens=False)["input_ids"][:n]:
            on_token(tid)
        raise RuntimeError("CUDA out of memory (injected)")
    return generate


def test_generation_error_ends_the_stream_with_an_error_event(tiny_tokenizer: Any) -> None:
    server = Server(Engine(tiny_tokenizer, model_name="failing", generate_fn=failing_after(3, tiny_tokenizer),
                           aliases=["m"]))
    try:
        client = server.client()
        received: list[Any] = []
        with pytest.raises(openai.APIError, match="generation failed: RuntimeError: CUDA out of memory"):
            for chunk in client.chat.completions.create(model="m", messages=HI, stream=True, max_tokens=50):
                received.append(chunk)
        assert received and all(c.choices[0].finish_reason is None for c in received)
        # on the wire: the deltas, then one error event, then a cleanly ended response (no [DONE])
        with httpx.stream("POST", f"{server.url}/v1/chat/completions", timeout=30,
                          headers={"Authorization": f"Bearer {KEY}"},
                          json={"model": "m", "messages": HI, "stream": True}) as resp:
            assert resp.status_code == 200
            events = [line for line in resp.iter_lines() if line.startswith("data: ")]
        assert '"error"' in events[-1] and "CUDA out of memory" in events[-1]
        assert not any(e == "data: [DONE]" for e in events)
        assert len(events) >= 2 and all('"error"' not in e for e in events[:-1])
        plain = client.with_options(max_retries=0)
        with pytest.raises(openai.InternalServerError, match="CUDA out of memory"):
            plain.chat.completions.create(model="m", messages=HI, max_tokens=50)
    finally:
        server.stop()
