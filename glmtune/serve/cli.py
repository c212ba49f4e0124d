"""``glmtune serve``: load a model (and adapter) and serve it over the OpenAI Chat Completions API."""

from __future__ import annotations

import ipaddress
import os

from glmtune.serve.app import API_KEY_ENV, create_app
from glmtune.serve.engine import Engine

DEFAULT_MAX_NEW_TOKENS = 512


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_main(model: str, adapter: str | None = None, host: str = "127.0.0.1", port: int = 8000,
               api_key: str | None = None, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
               model_name: str | None = None, device: str | None = None, log_level: str = "info") -> int:
    """Build the engine and run uvicorn until interrupted; return the exit code."""
    import uvicorn

    key = api_key if api_key is not None else (os.environ.get(API_KEY_ENV) or None)
    engine = Engine.load(model, adapter=adapter, model_name=model_name, max_new_tokens=max_new_tokens,
                         device=device)
    if not key and not _is_loopback(host):
        print(f"warning: serving on {host} without an API key; set --api-key or {API_KEY_ENV}")
    print(f"serving {engine.model_name} on http://{host}:{port}/v1 (max_new_tokens={max_new_tokens})")
    uvicorn.run(create_app(engine, key), host=host, port=port, log_level=log_level)
    return 0
