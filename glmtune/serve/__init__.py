"""An OpenAI-compatible Chat Completions server for GLM-4 models (FastAPI + uvicorn)."""

from __future__ import annotations

__all__ = ["Engine", "GenParams", "ReplyBuilder", "Result", "create_app"]


def __getattr__(name: str) -> object:
    # nothing is imported until it is used: ``glmtune --help`` reads the serve flags from glmtune.serve.cli
    if name == "create_app":
        from glmtune.serve.app import create_app

        return create_app
    if name in __all__:
        from glmtune.serve import engine

        return getattr(engine, name)
    raise AttributeError(name)
