"""Pydantic models for the OpenAI Chat Completions subset the server speaks (requests and responses)."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer

MAX_STOP_STRINGS = 16


class FunctionDef(BaseModel):
    """An OpenAI function schema inside a ``tools`` entry."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=256)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolSpec(BaseModel):
    """One entry of ``tools``; only function tools are supported."""

    type: Literal["function"] = "function"
    function: FunctionDef


class FunctionCall(BaseModel):
    """The ``function`` part of a tool call: its name and JSON-encoded arguments."""

    name: str
    arguments: str | dict[str, Any] = "{}"


class ToolCall(BaseModel):
    """A tool call, in a request's history or in a response."""

    id: str = Field(default_factory=lambda: new_id("call"))
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """A request message; content may be a string or a list of text parts; an assistant message may carry
    its reasoning (``reasoning_content``, or ``reasoning`` as some clients send it)."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool", "function", "observation"]
    content: str | list[Any] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None


class StreamOptions(BaseModel):
    """``stream_options``: ``include_usage`` adds a final chunk with the token counts."""

    include_usage: bool = False


# OpenAI fields accepted with no effect here: bookkeeping and caching hints that change no reply
IGNORED_FIELDS = frozenset({"user", "metadata", "store", "service_tier", "parallel_tool_calls",
                            "safety_identifier", "prompt_cache_key", "prompt_cache_options",
                            "prompt_cache_retention"})
# OpenAI fields this server cannot honour: accepted only when absent, null or their "off" value
UNSUPPORTED_FIELDS = {
    "response_format": "only {'type': 'text'} is supported (no JSON mode or JSON schema)",
    "logit_bias": "logit_bias is not supported",
    "audio": "audio output is not supported",
    "modalities": "only ['text'] is supported",
    "prediction": "predicted outputs are not supported",
    "web_search_options": "web search is not supported",
    "functions": "the legacy 'functions' are not supported; send 'tools'",
    "function_call": "the legacy 'function_call' is not supported; send 'tool_choice'",
    "reasoning_effort": "not supported by this model",
    "verbosity": "not supported by this model",
    "moderation": "moderation is not supported",
    "top_logprobs": "logprobs are not supported",
}
OFF_VALUES: dict[str, Any] = {"response_format": {"type": "text"}, "modalities": ["text"]}
# chat_template_kwargs (vLLM/SGLang's extension) this server honours
TEMPLATE_KWARGS = ("enable_thinking",)


def check_fields(data: Any) -> None:
    """Reject (400) unknown top-level fields, and supported-by-OpenAI fields this server cannot honour."""
    if not isinstance(data, dict):
        return
    known = set(ChatCompletionRequest.model_fields) | IGNORED_FIELDS
    for key, value in data.items():
        if key in UNSUPPORTED_FIELDS:
            if value in (None, {}, [], 0, False) or value == OFF_VALUES.get(key):
                continue
            raise APIError(400, f"{key}: {UNSUPPORTED_FIELDS[key]}", param=key, code="unsupported_parameter")
        if key not in known:
            raise APIError(400, f"Unrecognized request argument supplied: {key}", param=key,
                           code="unknown_parameter")


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions`` body (after :func:`check_fields`); unsupported values are rejected."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    n: int | None = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    repetition_penalty: float | None = Field(default=None, gt=0.0, le=10.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[ToolSpec] | None = None
    tool_choice: str | dict[str, Any] | None = None
    user: str | None = None
    chat_template_kwargs: dict[str, Any] | None = None

    @field_validator("n")
    @classmethod
    def _only_one_choice(cls, value: int | None) -> int | None:
        if value is not None and value != 1:
            raise ValueError("only n=1 is supported")
        return value

    @field_validator("stop")
    @classmethod
    def _stop_strings(cls, value: str | list[str] | None) -> str | list[str] | None:
        items = [value] if isinstance(value, str) else (value or [])
        if len(items) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings are supported")
        if any(not s for s in items):
            raise ValueError("stop strings must not be empty")
        return value

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _no_openai_penalties(cls, value: float | None) -> float | None:
        if value:
            raise ValueError("not supported; use repetition_penalty instead")
        return value

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("logprobs are not supported")
        return value

    @field_validator("tool_choice")
    @classmethod
    def _tool_choice(cls, value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        if value is not None and value not in ("auto", "none"):
            raise ValueError("only 'auto' and 'none' are supported (GLM-4 cannot be forced to call a tool)")
        return value

    @field_validator("chat_template_kwargs")
    @classmethod
    def _template_kwargs(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for key, item in (value or {}).items():
            if key not in TEMPLATE_KWARGS:
                raise ValueError(f"{key!r} is not supported; only {', '.join(TEMPLATE_KWARGS)} is")
            if not isinstance(item, bool):
                raise ValueError(f"{key} must be true or false")
        return value

    def enable_thinking(self) -> bool | None:
        """``chat_template_kwargs.enable_thinking``, None when not given."""
        return (self.chat_template_kwargs or {}).get("enable_thinking")

    def stop_strings(self) -> list[str]:
        """``stop`` as a list."""
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def requested_max_tokens(self) -> int | None:
        """``max_completion_tokens`` if given, else ``max_tokens``."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


def new_id(prefix: str) -> str:
    """A random id such as ``chatcmpl-...`` or ``call_...``."""
    sep = "_" if prefix == "call" else "-"
    return f"{prefix}{sep}{uuid.uuid4().hex[:24]}"


def _drop_none(data: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None or k in keep}


class Usage(BaseModel):
    """Token counts; ``completion_tokens`` includes the stop token the model emitted."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ResponseMessage(BaseModel):
    """The assistant message of a non-streamed choice (``content`` is null for a bare tool call); a thinking
    model's reasoning is in ``reasoning_content``."""

    role: Literal["assistant"] = "assistant"
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] | None = None

    @model_serializer(mode="wrap")
    def _serialize(self, handler: Any) -> dict[str, Any]:
        return _drop_none(handler(self), keep=("content",))


class Choice(BaseModel):
    """One choice of a non-streamed completion."""

    index: int = 0
    message: ResponseMessage
    finish_reason: Literal["stop", "length", "tool_calls"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    """A non-streamed completion."""

    id: str = Field(default_factory=lambda: new_id("chatcmpl"))
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage


class ToolCallDelta(BaseModel):
    """A tool call inside a streamed delta (sent whole, in one chunk)."""

    index: int = 0
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Delta(BaseModel):
    """The incremental part of a streamed chunk; absent fields are left out."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None

    @model_serializer(mode="wrap")
    def _serialize(self, handler: Any) -> dict[str, Any]:
        return _drop_none(handler(self))


class ChunkChoice(BaseModel):
    """One choice of a streamed chunk; ``finish_reason`` is set on the last one."""

    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length", "tool_calls"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streamed completion."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    """An entry of ``GET /v1/models``."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "glmtune"


class ModelList(BaseModel):
    """``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error object."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class APIError(Exception):
    """An error the server reports as an OpenAI-style body with ``status``."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = headers
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        """The JSON body for this error."""
        return error_body(self.message, self.type, self.param, self.code)
