"""The model holder and its single generation worker.

One worker thread runs one generation at a time (a model is not safe to drive from two threads, and one
request at a time keeps latency predictable); requests wait in its FIFO queue while the event loop stays
free. Tokens travel back to the request's coroutine one by one through an ``asyncio.Queue``. Cancelling a
job (its client went away) sets a flag that a stopping criterion checks after every token, so only that
job stops; a job cancelled while still queued never starts.

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
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from glmtune.layout import get_layout
from glmtune.serve.schemas import APIError, ChatCompletionRequest, ToolCall, new_id
from glmtune.serve.tool_syntax import GLM4_SYNTAX, ToolSyntax, derive_syntax

if TYPE_CHECKING:
    from glmtune.infer.runaway import LoopRule

log = logging.getLogger("glmtune.serve")
GREEDY_BELOW = 1e-5
SAMPLING_REPETITION_PENALTY = 1.2


@dataclass
class GenParams:
    """Decoding settings of one request, already resolved against the server defaults."""

    max_tokens: int
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    repetition_penalty: float | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)


# generate_fn(prompt_ids, params, on_token): feed each new token id to on_token; stop when it returns False.
GenerateFn = Callable[[list[int], GenParams, Callable[[int], bool]], None]


@dataclass
class Result:
    """A finished reply: text or tool calls, why it ended, and token counts."""

    content: str | None
    tool_calls: list[ToolCall] | None
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cancelled: bool = False
    loop: bool = False  # cut by the repetition guard


@dataclass
class Event:
    """What a job reports: a ``delta`` of content, ``done`` with the result, or an ``error``."""

    kind: str
    text: str = ""
    result: Result | None = None
    error: BaseException | None = None


class ReplyBuilder:
    """Turn generated ids into content deltas: stop ids and strings, tool-call detection, trimming.

    Content is the decoded reply with surrounding whitespace stripped; trailing whitespace and a possible
    beginning of a stop string are held back until later text shows they belong to the reply, so the
    streamed deltas always concatenate to exactly the final content. With a ``loop_rule`` a reply whose
    ids end in a loop is cut there with ``finish_reason`` ``length`` and ``looped`` set.
    """

    def __init__(self, tokenizer: Any, stop_ids: list[int], max_tokens: int, stop: list[str] | None = None,
                 tool_names: list[str] | None = None, loop_rule: LoopRule | None = None,
                 syntax: ToolSyntax | None = GLM4_SYNTAX) -> None:
        self.tokenizer = tokenizer
        self.syntax = syntax
        self.stop_ids = set(stop_ids)
        self.max_tokens = max_tokens
        self.stop = [s for s in (stop or []) if s]
        self.tool_names = list(tool_names or []) if syntax is not None else []
        self.ids: list[int] = []
        self.num_tokens = 0
        self.raw = ""
        self.content = ""
        self.mode = self._classify("")
        self.finished = False
        self.finish_reason = "length"
        self.tool_calls: list[ToolCall] | None = None
        self.loop_rule = loop_rule
        self.looped = False
        self._tail_loops: Callable[[list[int], LoopRule], bool] | None = None
        if loop_rule is not None:
            from glmtune.infer.runaway import tail_loops  # imports torch: only once a guard is wanted

            self._tail_loops = tail_loops
        self._prefix_offset = 0
        self._read_offset = 0
        self._closed = False

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _detokenize(self, final: bool) -> None:
        prefix = self._decode(self.ids[self._prefix_offset:self._read_offset])
        full = self._decode(self.ids[self._prefix_offset:])
        if len(full) > len(prefix) and (final or not full.endswith("\ufffd")):
            self.raw += full[len(prefix):]
            self._prefix_offset = self._read_offset
            self._read_offset = len(self.ids)

    def add(self, token_id: int) -> str:
        """Take one generated id; return the content that can be sent now (possibly empty)."""
        if self.finished:
            return ""
        self.num_tokens += 1
        if token_id in self.stop_ids:
            self.finished, self.finish_reason = True, "stop"
            return self.close()
        self.ids.append(token_id)
        self._detokenize(final=False)
        if self._tail_loops is not None and self.loop_rule is not None:
            self.looped = self._tail_loops(self.ids, self.loop_rule)
        if self.looped or self.num_tokens >= self.max_tokens:
            self.finished, self.finish_reason = True, "length"
            return self.close()
        if self.mode is None:
            self.mode = self._classify(self.raw)
        return self._text_delta(final=False) if self.mode == "text" else ""

    def close(self) -> str:
        """Finish the reply (generation ended); return the last content delta. Calling it again is a no-op."""
        if self._closed:
            return ""
        self.finished = self._closed = True
        self._detokenize(final=True)
        if self.mode != "text":
            calls = self.syntax.parse(self.raw, self.tool_names) if self.syntax is not None else None
            if calls:
                self.tool_calls, self.finish_reason = calls, "tool_calls"
                return ""
            self.mode = "text"
        return self._text_delta(final=True)

    def _classify(self, text: str) -> Literal["tool", "text"] | None:
        return self.syntax.classify(text, self.tool_names) if self.syntax is not None else "text"

    def _text_delta(self, final: bool) -> str:
        visible = self.raw.lstrip()
        # sent content never holds a stop string nor its beginning, so a match can only start after it
        start = len(self.content)
        cut = min((i for i in (visible.find(s, start) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            visible, final = visible[:cut], True
            self.finished, self.finish_reason = True, "stop"
        sendable = visible if final else visible[:len(visible) - self._held(visible)]
        end = len(sendable.rstrip())
        delta = visible[len(self.content):end] if end > len(self.content) else ""
        self.content += delta
        return delta

    def _held(self, text: str) -> int:
        """Length of the longest tail of ``text`` that could start a stop string."""
        best = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:k]):
                    best = k
                    break
        return best


class Job:
    """One queued or running generation; iterate :meth:`events` from the request's coroutine."""

    def __init__(self, prompt_ids: list[int], params: GenParams, tool_names: list[str],
                 loop: asyncio.AbstractEventLoop, request_id: str | None = None) -> None:
        self.id = request_id or new_id("chatcmpl")
        self.prompt_ids = prompt_ids
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
        """Deltas as they come, then one ``done`` or ``error``; leaving early cancels the job."""
        try:
            while True:
                event = await self._queue.get()
                yield event
                if event.kind != "delta":
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
    """A loaded model, its tokenizer and layout, and the one worker that generates with them."""

    def __init__(self, tokenizer: Any, model: Any = None, model_name: str = "glmtune", max_new_tokens: int = 512,
                 context_length: int | None = None, generate_fn: GenerateFn | None = None,
                 max_pending: int = 256, loop_rule: LoopRule | None | Literal["default"] = "default") -> None:
        if model is None and generate_fn is None:
            raise ValueError("an Engine needs a model or a generate_fn")
        self.tokenizer = tokenizer
        self.model = model
        self.model_name = model_name
        self.max_new_tokens = max_new_tokens
        self.layout = get_layout(tokenizer)
        self.stop_ids = self.layout.stop_ids
        self.tool_syntax = derive_syntax(self.layout, tokenizer)
        if context_length is None and model is not None:
            context_length = getattr(model.config, "max_position_embeddings", None)
        self.context_length = context_length
        self.generate_fn: GenerateFn = generate_fn or self._hf_generate
        self.max_pending = max_pending
        if loop_rule == "default":
            from glmtune.infer.runaway import DEFAULT_LOOP_RULE

            loop_rule = DEFAULT_LOOP_RULE
        self.loop_rule: LoopRule | None = loop_rule
        self.pending = 0
        self.stats = {"completed": 0, "cancelled": 0, "skipped": 0, "failed": 0, "looped": 0}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="glmtune-generate")

    @classmethod
    def load(cls, path: str, adapter: str | None = None, model_name: str | None = None, max_new_tokens: int = 512,
             device: str | None = None) -> Engine:
        """Load a model (and adapter) from ``path``: bfloat16 on a GPU, float32 on the CPU."""
        import torch

        from glmtune.models import load_model, load_tokenizer

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        tokenizer = load_tokenizer(path)
        model = load_model(path, adapter=adapter, dtype=dtype).to(device)
        name = model_name or Path(adapter or path).expanduser().resolve().name or "glmtune"
        return cls(tokenizer, model, model_name=name, max_new_tokens=max_new_tokens)

    def prompt_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        """The prompt ids (conversation + the template's generation prompt) for GLM-4 ``messages``."""
        try:
            return self.layout.prompt_ids(messages)
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

    def submit(self, prompt_ids: list[int], params: GenParams, tool_names: list[str] | None = None,
               request_id: str | None = None) -> Job:
        """Queue a generation (call from the event loop); raise a 429 error when too many are waiting."""
        if self.pending >= self.max_pending:
            raise APIError(429, f"the server is busy ({self.pending} requests queued); try again later",
                           type_="server_busy", code="server_busy")
        loop = asyncio.get_running_loop()
        job = Job(prompt_ids, params, list(tool_names or []), loop, request_id)
        self.pending += 1
        future = loop.run_in_executor(self._executor, self._run, job)
        future.add_done_callback(self._job_done)
        return job

    def _job_done(self, _: Any) -> None:
        self.pending -= 1

    def _run(self, job: Job) -> None:
        """Worker thread: generate one job, posting deltas and then its result."""
        if job.cancelled.is_set():
            self.stats["skipped"] += 1
            job.post(Event("done", result=Result(None, None, "stop", len(job.prompt_ids), 0, cancelled=True)))
            return
        builder = ReplyBuilder(self.tokenizer, self.stop_ids, job.params.max_tokens, job.params.stop,
                               job.tool_names, self.loop_rule, self.tool_syntax)

        def on_token(token_id: int) -> bool:
            delta = builder.add(token_id)
            if delta:
                job.post(Event("delta", text=delta))
            return not (builder.finished or job.cancelled.is_set())

        try:
            if job.params.seed is not None:
                import torch

                torch.manual_seed(job.params.seed)
            self.generate_fn(job.prompt_ids, job.params, on_token)
            delta = builder.close()
        except Exception as exc:  # reported to the client; the worker keeps serving others
            self.stats["failed"] += 1
            job.post(Event("error", error=exc))
            return
        if delta:
            job.post(Event("delta", text=delta))
        cancelled = job.cancelled.is_set()
        self.stats["cancelled" if cancelled else "completed"] += 1
        if builder.looped:
            self.stats["looped"] += 1
            log.warning("request %s: repetition guard cut a looping reply after %d tokens (max_tokens %d); "
                        "finish_reason=%s loop=True", job.id, builder.num_tokens, job.params.max_tokens,
                        builder.finish_reason)
        job.post(Event("done", result=Result(
            content=None if builder.tool_calls else builder.content, tool_calls=builder.tool_calls,
            finish_reason=builder.finish_reason, prompt_tokens=len(job.prompt_ids),
            completion_tokens=builder.num_tokens, cancelled=cancelled, loop=builder.looped,
        )))

    def _hf_generate(self, prompt_ids: list[int], params: GenParams, on_token: Callable[[int], bool]) -> None:
        """Run ``model.generate`` on one prompt, feeding each new token to ``on_token``."""
        import torch
        from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        class Streamer(BaseStreamer):
            def __init__(self) -> None:
                self.seen_prompt = False
                self.stop = False

            def put(self, value: torch.Tensor) -> None:
                if not self.seen_prompt:  # generate() first hands over the prompt itself
                    self.seen_prompt = True
                    return
                for tid in value.reshape(-1).tolist():
                    if not self.stop and not on_token(int(tid)):
                        self.stop = True

            def end(self) -> None:
                pass

        streamer = Streamer()

        class StopWhenAsked(StoppingCriteria):
            def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
                return torch.full((input_ids.shape[0],), streamer.stop, dtype=torch.bool, device=input_ids.device)

        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_ids[0]
        config = GenerationConfig(
            max_new_tokens=params.max_tokens, do_sample=params.do_sample, eos_token_id=self.stop_ids,
            pad_token_id=pad_id, use_cache=True, repetition_penalty=params.repetition_penalty or 1.0,
            **({"temperature": params.temperature, "top_p": params.top_p, "top_k": 0} if params.do_sample else {}),
        )
        device = next(self.model.parameters()).device
        ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)
        with torch.inference_mode():
            self.model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config, streamer=streamer,
                stopping_criteria=StoppingCriteriaList([StopWhenAsked()]),
            )

    def close(self) -> None:
        """Stop accepting work and let the worker finish its current job."""
        self._executor.shutdown(wait=False, cancel_futures=True)
