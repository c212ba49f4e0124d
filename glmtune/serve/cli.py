"""``glmtune serve``: load a model (and adapter) and serve it over the OpenAI Chat Completions API."""

from __future__ import annotations

import argparse
import os
import socket

from glmtune.argtypes import int_at_least, is_loopback, number_between
from glmtune.errors import UserError
from glmtune.serve.settings import (
    API_KEY_ENV,
    DEFAULT_BATCH_WINDOW_MS,
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_MAX_QUEUE,
)


def port_number(text: str) -> int:
    """``--port``: a TCP port, 1 to 65535."""
    if not text.strip().isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, got {text!r}")
    return int(text)


_at_least = int_at_least
_milliseconds = number_between(0, 10_000, "milliseconds")


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``glmtune serve``."""
    p.add_argument("--model", required=True, help="base model folder or hub id")
    p.add_argument("--adapter", help="adapter folder written by glmtune train")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1, loopback only)")
    p.add_argument("--port", type=port_number, default=8000, help="TCP port, 1-65535 (default 8000)")
    p.add_argument("--api-key", help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV})")
    p.add_argument("--max-new-tokens", type=_at_least(1), default=DEFAULT_MAX_NEW_TOKENS,
                   help="default and upper bound for max_tokens")
    p.add_argument("--model-name", "--served-model-name", dest="model_name", nargs="+", metavar="NAME",
                   help="model id reported to clients (default: the adapter's or model's folder name); further "
                        "names are accepted as aliases. Requests may also name the folder or the path as given; "
                        "any other 'model' gets 404 model_not_found")
    p.add_argument("--max-batch", type=_at_least(1), default=DEFAULT_MAX_BATCH,
                   help=f"most requests generated together in one batch (default {DEFAULT_MAX_BATCH}; "
                        "1 = one at a time)")
    p.add_argument("--batch-window-ms", type=_milliseconds, default=DEFAULT_BATCH_WINDOW_MS,
                   help="how long a new batch waits for more requests to join it "
                        f"(default {DEFAULT_BATCH_WINDOW_MS:g} ms)")
    p.add_argument("--max-queue", type=_at_least(0), default=DEFAULT_MAX_QUEUE,
                   help="requests that may wait while a batch generates; beyond that the server answers 429 "
                        f"with Retry-After (default {DEFAULT_MAX_QUEUE}; 0 = refuse while busy)")


def check_bind(host: str, port: int) -> None:
    """Raise :class:`UserError` unless ``host:port`` is a valid address that can be bound now."""
    if not 1 <= port <= 65535:
        raise UserError(f"--port must be from 1 to 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UserError(f"--host {host!r} is not an address of this machine ({exc})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def serve_main(model: str, adapter: str | None = None, host: str = "127.0.0.1", port: int = 8000,
               api_key: str | None = None, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
               model_name: str | list[str] | None = None, device: str | None = None, log_level: str = "info",
               max_batch: int = DEFAULT_MAX_BATCH, max_queue: int = DEFAULT_MAX_QUEUE,
               batch_window_ms: float = DEFAULT_BATCH_WINDOW_MS) -> int:
    """Build the engine and run uvicorn until interrupted; return the exit code."""
    check_bind(host, port)  # before the model loads: a bad port is a quick error, not a traceback
    import uvicorn

    from glmtune.serve.app import create_app
    from glmtune.serve.engine import Engine

    names = [model_name] if isinstance(model_name, str) else list(model_name or [])
    key = api_key if api_key is not None else (os.environ.get(API_KEY_ENV) or None)
    engine = Engine.load(model, adapter=adapter, model_name=names[0] if names else None,
                         max_new_tokens=max_new_tokens, device=device, aliases=names[1:], max_batch=max_batch,
                         max_queue=max_queue, batch_window_s=batch_window_ms / 1000)
    if not key and not is_loopback(host):
        print(f"warning: serving on {host} without an API key; set --api-key or {API_KEY_ENV}")
    print(f"serving {engine.model_name} on http://{host}:{port}/v1 (max_new_tokens={max_new_tokens}, "
          f"max_batch={max_batch}, max_queue={max_queue}; also answers to: {', '.join(engine.aliases[1:]) or '-'})")
    uvicorn.run(create_app(engine, key), host=host, port=port, log_level=log_level)
    return 0


def serve_from_args(args: argparse.Namespace) -> int:
    """Run ``glmtune serve`` from parsed :func:`add_serve_arguments` flags."""
    return serve_main(args.model, args.adapter, host=args.host, port=args.port, api_key=args.api_key,
                      max_new_tokens=args.max_new_tokens, model_name=args.model_name, max_batch=args.max_batch,
                      max_queue=args.max_queue, batch_window_ms=args.batch_window_ms)
