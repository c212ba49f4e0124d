"""The FastAPI app: OpenAI-compatible ``/v1/chat/completions`` (plain and streamed), ``/v1/models``, ``/health``.

Every error is an OpenAI-style body ``{"error": {"message", "type", "param", "code"}}``: malformed JSON and
invalid values, unknown fields and OpenAI fields this server cannot honour are 400, a missing or wrong API
key 401, a ``model`` that is neither the served name nor one of its aliases 404 ``model_not_found``, a full
queue 429 with ``Retry-After``. With an API key every path except ``/health`` needs ``Authorization: Bearer
KEY``. A client that goes away stops its own generation. A streamed reply sends its first chunk (the
assistant role) when its batch starts generating, so a queued client sees no data yet; one that fails
once it has started ends with an error event (``data: {"error": ...}``) and no ``[DONE]``. The response id
is also the request id in the server's log lines.

Thinking templates (GLM-4.5/4.6, GLM-Z1, Qwen3): the reply's reasoning is ``message.reasoning_content`` (in a
stream, ``delta.reasoning_content`` chunks before the content ones) and the answer after it the content;
``chat_template_kwargs: {"enable_thinking": false}`` asks for an answer without reasoning where the template
has that switch. Assistant messages in the request may carry ``reasoning_content`` back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from glmtune.serve.engine import Engine, Job, Result
from glmtune.serve.schemas import (
    APIError,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    ModelCard,
    ModelList,
    ResponseMessage,
    ToolCallDelta,
    Usage,
    check_fields,
    error_body,
    new_id,
)
from glmtune.serve.settings import API_KEY_ENV
from glmtune.serve.tools import glm4_messages, offered_tools, tool_names

log = logging.getLogger("glmtune.serve")
OPEN_PATHS = ("/health",)


class ApiKeyCheck:
    """ASGI middleware: answer 401 to any request but ``/health`` that lacks ``Authorization: Bearer KEY``."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app = app
        self.key = key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") not in OPEN_PATHS and not self._allowed(scope):
            body = error_body("missing or invalid API key; send 'Authorization: Bearer <key>'",
                              "invalid_request_error", code="invalid_api_key")
            await JSONResponse(body, status_code=401)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        headers = dict(scope.get("headers") or [])
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(token.strip().encode(), self.key)


def _validation_error(exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return JSONResponse(error_body(f"the request body is not valid JSON: {first.get('msg', '')}"), 400)
    loc = [str(p) for p in first.get("loc", ())]
    loc = loc[1:] if loc[:1] == ["body"] else loc
    param = ".".join(loc) or None
    msg = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    message = f"{param}: {msg}" if param else msg
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return JSONResponse(error_body(message, param=param, code=str(first.get("type") or "invalid_value")), 400)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), kind), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed")
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}: {exc}", "server_error"), 500)


async def _parse_body(request: Request) -> ChatCompletionRequest:
    """Read the body as JSON whatever its content type (``curl -d`` sends a form type) and validate it."""
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise APIError(400, f"the request body is not valid JSON: {exc}", code="json_invalid") from None
    check_fields(data)
    try:
        return ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


async def _wait_for_disconnect(request: Request) -> None:
    """Return once the client has gone away (the body has been read, so nothing else is pending)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _watch(request: Request, job: Job) -> None:
    await _wait_for_disconnect(request)
    job.cancel()


def _usage(result: Result) -> Usage:
    return Usage(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
                 total_tokens=result.prompt_tokens + result.completion_tokens)


async def _complete(request: Request, job: Job, model: str) -> ChatCompletion | JSONResponse:
    watcher = asyncio.ensure_future(_watch(request, job))
    try:
        result = await job.result()
    finally:
        watcher.cancel()
    if result.cancelled:
        return JSONResponse(error_body("the client closed the request", code="client_closed"), status_code=499)
    message = ResponseMessage(content=result.content, reasoning_content=result.reasoning or None,
                              tool_calls=result.tool_calls)
    choice = Choice(message=message, finish_reason=result.finish_reason)  # type: ignore[arg-type]
    return ChatCompletion(id=job.id, model=model, choices=[choice], usage=_usage(result))


def _error_event(message: str) -> str:
    return f"data: {json.dumps(error_body(message, 'server_error'), ensure_ascii=False)}\n\n"


async def _stream(job: Job, watcher: asyncio.Future[None], model: str, include_usage: bool) -> AsyncIterator[str]:
    """SSE chunks; a failure ends the stream with an error event (and no ``[DONE]``), never a cut connection."""
    cid, created = job.id, int(time.time())

    def sse(choices: list[ChunkChoice], usage: Usage | None = None) -> str:
        data = ChatCompletionChunk(id=cid, created=created, model=model, choices=choices, usage=usage).model_dump()
        if not include_usage:
            data.pop("usage")
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    try:
        async for event in job.events():
            if event.kind == "start":  # not before: a queued client can tell that it is queued
                yield sse([ChunkChoice(delta=Delta(role="assistant", content=""))])
            elif event.kind == "reasoning":  # a thinking template's reasoning comes before the content
                yield sse([ChunkChoice(delta=Delta(reasoning_content=event.text))])
            elif event.kind == "delta":
                yield sse([ChunkChoice(delta=Delta(content=event.text))])
            elif event.kind == "error":
                log.error("request %s: generation failed: %r", job.id, event.error)
                yield _error_event(f"generation failed: {type(event.error).__name__}: {event.error}")
                return
            elif event.result is not None:
                result = event.result
                if result.tool_calls:
                    calls = [ToolCallDelta(index=i, id=c.id, function=c.function)
                             for i, c in enumerate(result.tool_calls)]
                    yield sse([ChunkChoice(delta=Delta(tool_calls=calls))])
                yield sse([ChunkChoice(delta=Delta(), finish_reason=result.finish_reason)])  # type: ignore[arg-type]
                if include_usage:
                    yield sse([], usage=_usage(result))
        yield "data: [DONE]\n\n"
    except Exception as exc:  # the response has started: the client can only learn of it in the stream
        log.exception("request %s: stream failed", job.id)
        yield _error_event(f"internal error: {type(exc).__name__}: {exc}")
    finally:
        watcher.cancel()
        job.cancel()


def _check_model(engine: Engine, name: str | None) -> None:
    """404 ``model_not_found`` unless ``name`` is the served model or one of its aliases (absent is fine)."""
    if not engine.accepts(name):
        raise APIError(404, f"The model '{name}' does not exist; this server serves '{engine.model_name}' "
                       f"(also accepted: {', '.join(repr(a) for a in engine.aliases)})", param="model",
                       code="model_not_found")


def create_app(engine: Engine, api_key: str | None = None) -> FastAPI:
    """Build the FastAPI app around ``engine``; ``api_key`` (or env ``GLMTUNE_API_KEY``) turns on auth."""
    key = api_key if api_key is not None else (os.environ.get(API_KEY_ENV) or None)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        engine.close()

    app = FastAPI(title="glmtune", version="1", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.engine = engine
    _install_error_handlers(app)
    if key:
        app.add_middleware(ApiKeyCheck, key=key)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": engine.model_name, "pending": engine.pending,
                "waiting": len(engine.queue), "max_queue": engine.max_queue, "max_batch": engine.max_batch}

    @app.get("/v1/models")
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=engine.model_name)])

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> ModelCard:
        _check_model(engine, model_id)
        return ModelCard(id=engine.model_name)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> Any:
        body = await _parse_body(request)
        _check_model(engine, body.model)
        messages = glm4_messages(body)
        prompt = engine.prompt_ids(messages, body.enable_thinking())
        params = engine.params_for(body, len(prompt))
        # one id for the response, its chunks and the server's log lines about it
        job = engine.submit(prompt, params, tool_names(offered_tools(body)), request_id=new_id("chatcmpl"))
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            watcher = asyncio.ensure_future(_watch(request, job))  # runs even if the stream never starts
            return StreamingResponse(
                _stream(job, watcher, engine.model_name, include_usage), media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return await _complete(request, job, engine.model_name)

    return app
