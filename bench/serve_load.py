"""Load benchmark for ``glmtune serve``: N concurrent chat-completion clients against a real server process.

The server runs as a subprocess (``python -m glmtune serve``) on a free loopback port, with the tiny GLM-4
from :func:`glmtune.tiny.model.make_tiny` unless ``--model`` names a folder. It runs once per
``--max-batch`` value (default ``1,16``: one request at a time, i.e. before batching, then batches of up to
16), one after the other on the same machine in the same run. For each client count, that many asyncio
clients (one shared ``httpx.AsyncClient``) send requests back to back for ``--seconds``: short varied
prompts, ``temperature`` 0, ``max_tokens``. A request started before the deadline is waited for and counted;
requests/s divides the successful requests by the time until the last one finished. Replies are streamed
(unless ``--no-stream``): time to first token is from sending the request to the first chunk with content
(the role-only first chunk does not count); latency is the whole stream. Two warm-up requests run before
each server's first measurement and are not counted.

    python -m bench.serve_load [--model DIR] [--clients 1,8,32] [--max-batch 1,16] [--seconds 60]
                               [--max-tokens 32] [--no-stream] [--threads N] [--max-queue N]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import platform
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

PROMPTS = [
    "hi",
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "你好，请介绍一下你自己。",
    "List three colours.",
    "Translate 'good morning' into German.",
    "写一句关于春天的诗。",
    "How many legs does a spider have?",
]
REQUEST_TIMEOUT_S = 300.0
STARTUP_TIMEOUT_S = 180.0


@dataclass
class Level:
    """What one client count measured against one server setting (``max_batch``)."""

    clients: int
    max_batch: int = 1
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    first_content: list[float] = field(default_factory=list)
    completion_tokens: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        """Count one failed request under ``kind``."""
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile ``p`` (0-100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def machine() -> dict[str, str]:
    """CPU count (``nproc``), CPU model (``lscpu``), GPU, Python and torch versions, the load average."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT")}
    # nproc counts the cores this process may use, but would report OMP_NUM_THREADS if it were set
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False, env=env).stdout.strip()
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    names = [line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")]
    model = names[0] if names else platform.processor() or "unknown CPU"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    import torch  # the server puts the model on the GPU when torch sees one

    gpu = "no GPU (the model runs in float32 on the CPU)"
    if torch.cuda.is_available():
        gpu = f"GPU {torch.cuda.get_device_name(0)} (the model runs there in bfloat16)"
    return {"nproc": nproc or str(os.cpu_count()), "cpu": model, "python": platform.python_version(),
            "load": load, "gpu": gpu, "torch": torch.__version__}


class ServerProcess:
    """``python -m glmtune serve`` as a subprocess; its output goes to a log file."""

    def __init__(self, model: str, port: int, key: str, log_path: Path, max_new_tokens: int,
                 threads: int | None = None, extra: list[str] | None = None) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        env = {**os.environ, "GLMTUNE_API_KEY": key}
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)  # torch's intra-op thread count in the server
        cmd = [sys.executable, "-m", "glmtune", "serve", "--model", model, "--host", "127.0.0.1", "--port",
               str(port), "--max-new-tokens", str(max_new_tokens), *(extra or [])]
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Poll ``/health`` until it answers; raise with the log tail if the server dies or is too slow."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"the server did not answer /health within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the server printed."""
        if not self._log.closed:
            self._log.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Ctrl-C the server (uvicorn shuts down cleanly), then terminate or kill it if it lingers."""
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGINT, 15), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self._log.close()


async def one_request(client: httpx.AsyncClient, body: dict[str, Any], level: Level) -> None:
    """Send one chat completion and record its latency, tokens or error."""
    start = time.perf_counter()
    try:
        if body.get("stream"):
            first: float | None = None
            usage: dict[str, Any] | None = None
            finished = False
            async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    level.error(f"HTTP {resp.status_code}")
                    return
                async for line in resp.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = line[6:]
                    if data == "[DONE]":
                        finished = True
                        break
                    chunk = json.loads(data)
                    if "error" in chunk:
                        level.error("stream error")
                        return
                    usage = chunk.get("usage") or usage
                    choices = chunk.get("choices") or []
                    if first is None and choices and choices[0]["delta"].get("content"):
                        first = time.perf_counter() - start
            if not finished:
                level.error("stream cut short")
                return
            if first is not None:
                level.first_content.append(first)
            level.completion_tokens += int((usage or {}).get("completion_tokens", 0))
        else:
            resp = await client.post("/v1/chat/completions", json=body)
            if resp.status_code != 200:
                level.error(f"HTTP {resp.status_code}")
                return
            level.completion_tokens += int(resp.json()["usage"]["completion_tokens"])
    except (httpx.HTTPError, json.JSONDecodeError, KeyError) as exc:
        level.error(type(exc).__name__)
        return
    level.latencies.append(time.perf_counter() - start)


def request_body(index: int, max_tokens: int, stream: bool) -> dict[str, Any]:
    """The ``index``-th request: prompts taken in turn, greedy, ``max_tokens``."""
    messages = [{"role": "user", "content": PROMPTS[index % len(PROMPTS)]}]
    body: dict[str, Any] = {"model": "glmtune", "messages": messages, "temperature": 0,
                            "max_tokens": max_tokens}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return body


async def run_level(url: str, key: str, clients: int, seconds: float, max_tokens: int, stream: bool) -> Level:
    """``clients`` concurrent clients, each sending requests back to back until ``seconds`` have passed."""
    level = Level(clients)
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=REQUEST_TIMEOUT_S,
                                 limits=limits) as client:
        start = time.perf_counter()
        deadline = start + seconds

        async def worker(i: int) -> None:
            n = i
            while time.perf_counter() < deadline:
                await one_request(client, request_body(n, max_tokens, stream), level)
                n += clients

        await asyncio.gather(*(worker(i) for i in range(clients)))
        level.seconds = time.perf_counter() - start
    return level


async def warm_up(url: str, key: str, max_tokens: int, stream: bool, n: int = 2) -> None:
    """Send ``n`` requests one after another, uncounted; fail if one of them fails."""
    level = Level(1)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"},
                                 timeout=REQUEST_TIMEOUT_S) as client:
        for i in range(n):
            await one_request(client, request_body(i, max_tokens, stream), level)
    if level.errors:
        raise RuntimeError(f"warm-up requests failed: {level.error_kinds}")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def render(levels: list[Level], info: dict[str, str], command: str, model_desc: str,
           args: argparse.Namespace) -> str:
    """The results as a markdown section: date, machine, command, then one table row per setting and count."""
    mode = "streamed (SSE)" if args.stream else "non-streamed"
    out = [
        f"## Server load: `glmtune serve`, {mode}, before and after batching",
        "",
        f"- Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC. Machine: {info['nproc']} CPU cores "
        f"({info['cpu']}), {info['gpu']}, Python {info['python']}, torch {info['torch']}; load average before "
        f"the run: {info['load']}. Clients and server share the machine.",
        f"- Command: `{command}`",
        f"- Model: {model_desc}. Each client sends requests back to back for {args.seconds:g} s "
        f"(greedy, max_tokens {args.max_tokens}, {len(PROMPTS)} short prompts in turn); one server process per "
        f"`--max-batch` value (1 = one request at a time, as before batching); server torch threads: "
        f"{args.threads or 'torch default'}; batch window {args.batch_window_ms:g} ms.",
        "",
    ]
    header = ["max batch", "clients", "seconds", "requests", "requests/s", "completion tokens/s"]
    if args.stream:
        header += ["p50 TTFT (ms)", "p90 TTFT (ms)"]
    header += ["p50 latency (ms)", "p99 latency (ms)", "errors"]
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for lv in levels:
        ok = len(lv.latencies)
        row = [str(lv.max_batch), str(lv.clients), f"{lv.seconds:.1f}", str(ok),
               f"{ok / lv.seconds:.2f}" if lv.seconds else "-",
               f"{lv.completion_tokens / lv.seconds:.1f}" if lv.seconds else "-"]
        if args.stream:
            row += [_ms(percentile(lv.first_content, 50)), _ms(percentile(lv.first_content, 90))]
        row += [_ms(percentile(lv.latencies, 50)), _ms(percentile(lv.latencies, 99))]
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(lv.error_kinds.items()))
        row.append(f"{lv.errors} ({kinds})" if lv.errors else "0")
        out.append("| " + " | ".join(row) + " |")
    return "\n".join(out + [""] + compare(levels)) + "\n"


def compare(levels: list[Level]) -> list[str]:
    """One line per client count: throughput and median time to first token, last setting against the first."""
    settings = sorted({lv.max_batch for lv in levels})
    if len(settings) < 2:
        return []
    lines = []
    for clients in sorted({lv.clients for lv in levels}):
        by = {lv.max_batch: lv for lv in levels if lv.clients == clients}
        before, after = by.get(settings[0]), by.get(settings[-1])
        if not before or not after or not before.seconds or not after.seconds or not before.latencies:
            continue
        speed = (len(after.latencies) / after.seconds) / (len(before.latencies) / before.seconds)
        line = f"- {clients} client(s): requests/s x{speed:.2f} with max batch {settings[-1]} against {settings[0]}"
        ttft_before, ttft_after = percentile(before.first_content, 50), percentile(after.first_content, 50)
        if ttft_before and ttft_after:
            line += f"; p50 time to first token {_ms(ttft_before)} -> {_ms(ttft_after)} ms"
        lines.append(line + ".")
    return lines


def parse_clients(text: str) -> list[int]:
    """``"1,8,32"`` -> ``[1, 8, 32]``; every count must be positive."""
    counts = [int(x) for x in text.split(",") if x.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("--clients needs positive counts such as 1,8,32")
    return counts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The benchmark's flags."""
    parser = argparse.ArgumentParser(prog="python -m bench.serve_load", description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="model folder (default: a tiny GLM-4 built into a temp dir)")
    parser.add_argument("--clients", type=parse_clients, default=[1, 8, 32],
                        help="client counts (default 1,8,32)")
    parser.add_argument("--max-batch", type=parse_clients, default=[1, 16],
                        help="server --max-batch values, one server each (default 1,16: before and after batching)")
    parser.add_argument("--batch-window-ms", type=float, default=10.0, help="server --batch-window-ms (default 10)")
    parser.add_argument("--max-queue", type=int, default=256, help="server --max-queue (default 256)")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds per client count (default 60)")
    parser.add_argument("--max-tokens", type=int, default=32, help="max_tokens of every request (default 32)")
    parser.add_argument("--stream", action="store_true", default=True,
                        help="stream the replies and measure time to first token (the default)")
    parser.add_argument("--no-stream", dest="stream", action="store_false", help="plain (non-streamed) requests")
    parser.add_argument("--threads", type=int, help="torch threads of the server (default: torch's)")
    return parser.parse_args(argv)


def measure(model: str, max_batch: int, args: argparse.Namespace, tmp: Path) -> list[Level]:
    """Start a server with ``--max-batch max_batch``, load it at each client count, stop it."""
    key = secrets.token_hex(16)
    extra = ["--model-name", "glmtune", "--max-batch", str(max_batch), "--batch-window-ms", f"{args.batch_window_ms:g}", "--max-queue",
             str(args.max_queue)]
    server = ServerProcess(model, free_port(), key, tmp / f"server-{max_batch}.log", max(512, args.max_tokens),
                           args.threads, extra)
    levels: list[Level] = []
    try:
        server.wait_ready()
        print(f"max batch {max_batch}: server up on {server.url}; warming up", file=sys.stderr)
        asyncio.run(warm_up(server.url, key, args.max_tokens, args.stream))
        for clients in args.clients:
            print(f"  {clients} client(s) for {args.seconds:g} s ...", file=sys.stderr)
            level = asyncio.run(run_level(server.url, key, clients, args.seconds, args.max_tokens, args.stream))
            level.max_batch = max_batch
            levels.append(level)
            print(f"  {len(level.latencies)} requests, {level.errors} errors", file=sys.stderr)
    finally:
        server.stop()
    if any(lv.errors for lv in levels):
        print("server log tail:\n" + server.log_tail(), file=sys.stderr)
    return levels


def main(argv: list[str] | None = None) -> int:
    """Build or take the model, then per --max-batch: start the server, load it, stop it; print the table."""
    args = parse_args(argv)
    given = shlex.join(sys.argv[1:] if argv is None else argv)
    command = f"python -m bench.serve_load {given}".rstrip()
    info = machine()
    levels: list[Level] = []
    with tempfile.TemporaryDirectory(prefix="glmtune-serve-load-") as tmp:
        if args.model:
            model, model_desc = args.model, f"`{args.model}`"
        else:
            from glmtune.tiny.model import make_tiny
            from glmtune.world import tokenizer_corpus

            model = str(make_tiny(Path(tmp) / "tiny", seed=0, corpus=tokenizer_corpus(0)))
            model_desc = "tiny random GLM-4 from `glmtune.tiny.model.make_tiny` (seed 0)"
        for max_batch in args.max_batch:
            levels += measure(model, max_batch, args, Path(tmp))
    print(render(levels, info, command, model_desc, args))
    return 1 if any(lv.errors for lv in levels) else 0


if __name__ == "__main__":
    sys.exit(main())
