"""An OpenAI-compatible Chat Completions server for GLM-4 models (FastAPI + uvicorn)."""

from glmtune.serve.engine import Engine, GenParams, ReplyBuilder, Result

__all__ = ["Engine", "GenParams", "ReplyBuilder", "Result", "create_app"]


def __getattr__(name: str) -> object:
    if name == "create_app":  # keep FastAPI out of ``import glmtune.serve`` until it is needed
        from glmtune.serve.app import create_app

        return create_app
    raise AttributeError(name)
