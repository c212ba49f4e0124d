"""The model holder and its generation worker, which batches concurrent requests.

One worker thread drives the model (a model is not safe to drive from two threads). Requests wait in a
bounded FIFO queue (:class:`~glmtune.serve.batching.JobQueue`) while the event loop stays free; a request
that finds ``max_queue`` others waiting while a batch generates is refused with 429 and a ``Retry-After``
estimate. The worker takes
up to ``max_batch`` waiting requests that can share one ``model.generate`` call (same sampling settings;
seeded sampling runs alone), waiting up to ``batch_window_s`` for more to arrive, and generates them
together. ``max_batch=1`` is one request at a time. Each job hears ``start`` when its batch begins, then its
own tokens one by one through an ``asyncio.Queue``. Cancelling a job (its client went away) stops only
that row at its next token; a job cancelled while still queued never starts.

The repetition guard of :mod:`glmtune.infer.runaway` (``DEFAULT_LOOP_RULE`` unless the engine is given
another rule, or None to turn it off) watches every reply: one that falls into a loop of repeated token
n-grams is cut, finishes with ``length`` like a reply that hit ``max_tokens``, carries ``loop=True`` in its
:class:`Result`, and is logged as a warning naming the job's request id.

Sampling defaults follow OpenAI: ``temperature`` 1 and ``top_p`` 1 when absent, and ``temperature`` 0
means greedy decoding. ``repetition_penalty`` (an extension) defaults to 1.2, the GLM-4 demo's value, when
sampling and to none when greedy; a value given explicitly always applies.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from glmtune.infer.reply_text import ReasoningMode, kept_special_ids, reasoning_mode
from glmtune.layout import get_layout
from glmtune.serve.batching import (
    BatchGenerateFn,
    GenerateFn,
    GenParams,
    JobQueue,
    OnToken,
    hf_batch_generate,
    one_at_a_time,
)
from glmtune.serve.reply import ReplyBuilder
from glmtune.serve.schemas import APIError, ChatCompletionRequest, ToolCall, new_id
from glmtune.serve.tool_syntax import derive_syntax

if TYPE_CHECKING:
    from glmtune.infer.runaway import LoopRule

__all__ = ["Engine", "Event", "GenParams", "GenerateFn", "Job", "ReplyBuilder", "Result"]

log = logging.getLogger("glmtune.serve")
GREEDY_BELOW = 1e-5
SAMPLING_REPETITION_PENALTY = 1.2
DEFAULT_MAX_BATCH = 16
DEFAULT_BATCH_WINDOW_S = 0.01
DEFAULT_MAX_QUEUE = 256


@dataclass
class Result:
    """A finished reply: text or tool calls (or both), its reasoning, why it ended, and token counts."""

    content: str | None
    tool_calls: list[ToolCall] | None
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cancelled: bool = False
    loop: bool = False  # cut by the repetition guard
    reasoning: str | None = None


@dataclass
class Event:
    """What a job reports: ``start`` (its batch began), a ``reasoning`` or content ``delta``, ``done`` or an
    ``error``."""

    kind: str
    text: str = ""
    result: Result | None = None
    error: BaseException | None = None


class Job:
    """One queued or running generation; iterate :meth:`events` from the request's coroutine."""

    def __init__(self, prompt_ids: list[int], params: GenParams, tool_names: list[str],
                 loop: asyncio.AbstractEventLoop, request_id: str | None = None,
                 reasoning: ReasoningMode = None) -> None:
        self.id = request_id or new_id("chatcmpl")
        self.prompt_ids = prompt_ids
        self.reasoning = reasoning  # how the reply lays out its reasoning (None: a template without thinking)
        self.params = params
        self.tool_names = tool_names
        self.cancelled = threading.Event()
        self._loop = loop
        self._queue: asyncio.Queue[Event] = asyncio.Queue()

    def cancel(self) -> None:
        """Ask the worker to stop this job (or never start it)."""
        self.cancelled.set()

    def post(self, event: Event) -> None:
        """Hand an event to the request's coroutine (called from the worker thread)."""
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, event)
        except RuntimeError:  # the event loop is gone (server shutting down)
            self.cancelled.set()

    async def events(self) -> AsyncIterator[Event]:
        """``start``, deltas as they come, then one ``done`` or ``error``; leaving early cancels the job."""
        try:
            while True:
                event = await self._queue.get()
                yield event
                if event.kind not in ("start", "reasoning", "delta"):
                    return
        finally:
            self.cancel()

    async def result(self) -> Result:
        """Wait for the whole reply; raise the worker's error if generation failed."""
        async for event in self.events():
            if event.kind == "error" and event.error is not None:
                raise event.error
            if event.kind == "done" and event.result is not None:
                return event.result
        raise RuntimeError("the generation worker stopped without a result")


class Engine:
    """A loaded model, its tokenizer and layout, and the one worker that generates with them in batches."""

    def __init__(self, tokenizer: Any, model: Any = None, model_name: str = "glmtune", max_new_tokens: int = 512,
                 context_length: int | None = None, generate_fn: GenerateFn | None = None,
                 max_queue: int = DEFAULT_MAX_QUEUE, loop_rule: LoopRule | None | Literal["default"] = "default",
                 max_batch: int = DEFAULT_MAX_BATCH, batch_window_s: float = DEFAULT_BATCH_WINDOW_S,
                 batch_generate_fn: BatchGenerateFn | None = None, aliases: list[str] | None = None) -> None:
        if model is None and generate_fn is None and batch_generate_fn is None:
            raise ValueError("an Engine needs a model, a generate_fn or a batch_generate_fn")
        if max_queue < 0:
            raise ValueError("max_queue must be >= 0")
        self.tokenizer = tokenizer
        self.model = model
        self.model_name = model_name
        self.aliases = [model_name] + [a for a in dict.fromkeys(aliases or []) if a and a != model_name]
        self.max_new_tokens = max_new_tokens
        self.layout = get_layout(tokenizer)
        self.stop_ids = self.layout.stop_ids
        self.tool_syntax = derive_syntax(self.layout, tokenizer)
        self.keep_ids = kept_special_ids(self.layout, tokenizer)  # think and tool-call tags stay in replies
        if context_length is None and model is not None:
            context_length = getattr(model.config, "max_position_embeddings", None)
        self.context_length = context_length
        if batch_generate_fn is None and generate_fn is not None:
            batch_generate_fn, max_batch = one_at_a_time(generate_fn), 1
        self.batch_generate_fn: BatchGenerateFn = batch_generate_fn or self._hf_batch_generate
        self.max_queue = max_queue
        if loop_rule == "default":
            from glmtune.infer.runaway import DEFAULT_LOOP_RULE

            loop_rule = DEFAULT_LOOP_RULE
        self.loop_rule: LoopRule | None = loop_rule
        self.pending = 0  # queued or generating
        self.stats = {"completed": 0, "cancelled": 0, "skipped": 0, "failed": 0, "looped": 0, "batches": 0,
                      "largest_batch": 0, "refused": 0}
        self._batch_seconds = 0.0  # moving average of a batch's duration, for Retry-After
        self._lock = threading.Lock()
        self.queue = JobQueue(max_batch, batch_window_s)
        self._worker = threading.Thread(target=self._work, name="glmtune-generate", daemon=True)
        self._worker.start()

    @property
    def max_batch(self) -> int:
        """The most requests generated together."""
        return self.queue.max_batch

    @classmethod
    def load(cls, path: str, adapter: str | None = None, model_name: str | None = None, max_new_tokens: int = 512,
             device: str | None = None, **options: Any) -> Engine:
        """Load a model (and adapter) from ``path``: bfloat16 on a GPU, float32 on the CPU."""
        import torch

        from glmtune.models import load_model, load_tokenizer

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        tokenizer = load_tokenizer(path)
        model = load_model(path, adapter=adapter, dtype=dtype).to(device)
        names = default_names(path, adapter)
        name = model_name or names[0]
        aliases = [*options.pop("aliases", []), *names]
        return cls(tokenizer, model, model_name=name, max_new_tokens=max_new_tokens, aliases=aliases, **options)

    def accepts(self, name: str | None) -> bool:
        """Whether a request's ``model`` names this model (absent means this model too)."""
        return name is None or name in self.aliases

    def prompt_ids(self, messages: list[dict[str, Any]], enable_thinking: bool | None = None) -> list[int]:
        """The prompt ids (conversation + the template's generation prompt) for GLM-4 ``messages``;
        ``enable_thinking`` False asks a thinking template for an answer without reasoning."""
        try:
            return self.layout.prompt_ids(messages, enable_thinking=enable_thinking)
        except Exception as exc:  # a template error is a problem with the request
            raise APIError(400, f"messages: cannot render the conversation ({exc})", param="messages") from None

    def params_for(self, request: ChatCompletionRequest, prompt_len: int) -> GenParams:
        """Resolve a request's decoding settings against the defaults and the context length."""
        room = None if self.context_length is None else self.context_length - prompt_len
        if room is not None and room < 1:
            raise APIError(400, f"the prompt has {prompt_len} tokens; this model's context is "
                           f"{self.context_length}", param="messages", code="context_length_exceeded")
        max_tokens = request.requested_max_tokens() or self.max_new_tokens
        if room is not None:
            max_tokens = min(max_tokens, room)
        temperature = 1.0 if request.temperature is None else request.temperature
        do_sample = temperature >= GREEDY_BELOW
        penalty = request.repetition_penalty
        if penalty is None and do_sample:
            penalty = SAMPLING_REPETITION_PENALTY
        return GenParams(
            max_tokens=max_tokens, do_sample=do_sample, temperature=temperature,
            top_p=1.0 if request.top_p is None else request.top_p,
            repetition_penalty=penalty, seed=request.seed, stop=request.stop_strings(),
        )

    def retry_after(self) -> int:
        """Seconds until the queue has likely moved on: the waiting batches times a batch's recent duration."""
        batches_ahead = len(self.queue) / self.max_batch + 1
        return max(1, math.ceil(self._batch_seconds * batches_ahead))

    def submit(self, prompt_ids: list[int], params: GenParams, tool_names: list[str] | None = None,
               request_id: str | None = None) -> Job:
        """Queue a generation (call from the event loop); raise a 429 error when the queue is full.

        ``max_queue`` requests may wait while a batch generates; while none does, a whole batch may gather.
        """
        waiting = len(self.queue)
        generating = self.pending > waiting
        if waiting >= (self.max_queue if generating else max(self.max_queue, self.max_batch)):
            self.stats["refused"] += 1
            raise APIError(429, f"the server is busy: {waiting} requests are waiting (--max-queue "
                           f"{self.max_queue}); retry after {self.retry_after()} s", type_="server_busy",
                           code="server_busy", headers={"Retry-After": str(self.retry_after())})
        job = Job(prompt_ids, params, list(tool_names or []), asyncio.get_running_loop(), request_id,
                  reasoning_mode(self.layout))
        with self._lock:
            self.pending += 1
        self.queue.put(job)
        return job

    def _work(self) -> None:
        """Worker thread: take batches until the queue closes."""
        while (batch := self.queue.take()) is not None:
            started = time.monotonic()
            try:
                self._run_batch(batch)
            except Exception as exc:  # a fault outside generation must not stop the worker: the batch hears of it
                log.exception("a batch of %d failed", len(batch))
                for job in batch:
                    job.post(Event("error", error=exc))
            finally:
                with self._lock:
                    self.pending -= len(batch)
            took = time.monotonic() - started
            self._batch_seconds = took if not self._batch_seconds else 0.8 * self._batch_seconds + 0.2 * took

    def _run_batch(self, jobs: list[Job]) -> None:
        """Generate ``jobs`` together, posting each one's deltas and then its result (or the error)."""
        live = []
        for job in jobs:
            if job.cancelled.is_set():
                self.stats["skipped"] += 1
                job.post(Event("done", result=Result(None, None, "stop", len(job.prompt_ids), 0, cancelled=True)))
            else:
                live.append(job)
        if not live:
            return
        builders = [ReplyBuilder(self.tokenizer, self.stop_ids, job.params.max_tokens, job.params.stop,
                                 job.tool_names, self.loop_rule, self.tool_syntax, self.keep_ids, job.reasoning)
                    for job in live]
        self.stats["batches"] += 1
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(live))
        params = live[0].params
        params = GenParams(**{**vars(params), "max_tokens": max(job.params.max_tokens for job in live)})
        for job in live:
            job.post(Event("start"))
        try:
            if params.seed is not None:
                import torch

                torch.manual_seed(params.seed)
            self.batch_generate_fn([job.prompt_ids for job in live], params,
                                   [_feeder(job, builder) for job, builder in zip(live, builders, strict=True)])
            last = [builder.close() for builder in builders]
        except Exception as exc:  # reported to each client; the worker keeps serving others
            self.stats["failed"] += len(live)
            for job in live:
                job.post(Event("error", error=exc))
            return
        for job, builder, delta in zip(live, builders, last, strict=True):
            self._finish(job, builder, delta)

    def _finish(self, job: Job, builder: ReplyBuilder, delta: str) -> None:
        """Post a job's last deltas and its result; count and log it."""
        _post_deltas(job, builder, delta)
        cancelled = job.cancelled.is_set()
        self.stats["cancelled" if cancelled else "completed"] += 1
        if builder.looped:
            self.stats["looped"] += 1
            log.warning("request %s: repetition guard cut a looping reply after %d tokens (max_tokens %d); "
                        "finish_reason=%s loop=True", job.id, builder.num_tokens, job.params.max_tokens,
                        builder.finish_reason)
        job.post(Event("done", result=Result(
            content=(builder.content or None) if builder.tool_calls else builder.content,
            tool_calls=builder.tool_calls, finish_reason=builder.finish_reason, prompt_tokens=len(job.prompt_ids),
            completion_tokens=builder.num_tokens, cancelled=cancelled, loop=builder.looped,
            reasoning=builder.reasoning if job.reasoning is not None else None,
        )))

    def _hf_batch_generate(self, prompts: list[list[int]], params: GenParams, on_tokens: list[OnToken]) -> None:
        """Batched ``model.generate`` over ``prompts`` (see :func:`~glmtune.serve.batching.hf_batch_generate`)."""
        hf_batch_generate(self.model, self.tokenizer, self.stop_ids, prompts, params, on_tokens)

    def close(self) -> None:
        """Stop taking batches (the running one finishes); jobs still waiting end as cancelled."""
        for job in self.queue.close():
            job.cancel()
            job.post(Event("done", result=Result(None, None, "stop", len(job.prompt_ids), 0, cancelled=True)))


def _feeder(job: Job, builder: ReplyBuilder) -> OnToken:
    """The token callback of one row: build the reply, post deltas, say whether to go on."""
    def on_token(token_id: int) -> bool:
        _post_deltas(job, builder, builder.add(token_id))
        return not (builder.finished or job.cancelled.is_set())

    return on_token


def _post_deltas(job: Job, builder: ReplyBuilder, delta: str) -> None:
    """Post the reasoning the builder has written since last time, then the content ``delta``."""
    thought = builder.take_reasoning()
    if thought:
        job.post(Event("reasoning", text=thought))
    if delta:
        job.post(Event("delta", text=delta))


def default_names(path: str, adapter: str | None) -> list[str]:
    """Names a loaded model answers to: the adapter's or model's folder name first, then the paths as given."""
    names = []
    for given in (adapter, path):
        if given:
            folder = Path(given).expanduser().resolve().name
            names += [folder, given.rstrip("/")]
    return [n for n in dict.fromkeys(names) if n] or ["glmtune"]
