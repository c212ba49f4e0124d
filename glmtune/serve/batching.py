"""Batching for the server: the bounded job queue with its collection window, and batched ``model.generate``.

The worker takes the oldest waiting job plus every waiting job that can share its ``model.generate`` call
(same sampling settings, see :func:`batch_key`), up to ``max_batch``. When fewer are waiting, it waits up
to the collection window for more to arrive. Jobs in a batch start together; each row stops on its own (its
stop ids and strings, its ``max_tokens``, the repetition guard, its client going away) while the others go
on, and the call returns when every row has stopped. Requests that arrive meanwhile wait for the next batch.

transformers' continuous batching (``generate_batch`` / ``init_continuous_batching``) was tried on the CPU
with the tiny GLM-4: 8.5 s for 8 replies of 32 tokens, against 0.10 s for one batched ``generate``; it
has no per-request seed nor repetition penalty either. So the server batches with ``generate``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch


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


OnToken = Callable[[int], bool]
# generate_fn(prompt_ids, params, on_token): feed each new token id to on_token; stop when it returns False.
GenerateFn = Callable[[list[int], GenParams, OnToken], None]
# batch_generate_fn(prompts, params, on_tokens): the same for several prompts, row i feeding on_tokens[i].
BatchGenerateFn = Callable[[list[list[int]], GenParams, list[OnToken]], None]


class Queued(Protocol):
    """What the queue needs of a job."""

    params: GenParams


def batch_key(params: GenParams) -> tuple[Any, ...] | None:
    """Jobs with equal keys can share one ``generate`` call; None: the job runs alone (seeded sampling)."""
    if not params.do_sample:
        return ("greedy", params.repetition_penalty)
    if params.seed is not None:  # a seed repeats only when the random draws are the job's own
        return None
    return ("sample", params.temperature, params.top_p, params.repetition_penalty)


class JobQueue:
    """A thread-safe FIFO of waiting jobs; :meth:`take` hands out the next batch."""

    def __init__(self, max_batch: int = 16, window_s: float = 0.01) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.max_batch = max_batch
        self.window_s = window_s
        self._jobs: deque[Any] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        return len(self._jobs)

    def put(self, job: Queued) -> None:
        """Add a job at the end of the queue."""
        with self._cond:
            self._jobs.append(job)
            self._cond.notify_all()

    def close(self) -> list[Any]:
        """Stop handing out batches; return the jobs still waiting."""
        with self._cond:
            self._closed = True
            left = list(self._jobs)
            self._jobs.clear()
            self._cond.notify_all()
        return left

    def take(self) -> list[Any] | None:
        """Block until a job waits; collect compatible ones for up to the window; None once closed."""
        with self._cond:
            while not self._jobs and not self._closed:
                self._cond.wait()
            deadline = time.monotonic() + self.window_s
            while not self._closed and len(self._compatible()) < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if self._closed:
                return None
            batch = self._compatible()[:self.max_batch]
            for job in batch:
                self._jobs.remove(job)
            return batch

    def _compatible(self) -> list[Any]:
        first = self._jobs[0]
        key = batch_key(first.params)
        if key is None:
            return [first]
        return [job for job in self._jobs if batch_key(job.params) == key]


class _QuietPrecedence(logging.Filter):
    """Drops generate's notice that our own repetition-penalty processor replaces its own (intended)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "RepetitionPenaltyLogitsProcessor" not in record.getMessage()


_QUIET = _QuietPrecedence()


def hf_batch_generate(model: Any, tokenizer: Any, stop_ids: list[int], prompts: list[list[int]],
                      params: GenParams, on_tokens: list[OnToken]) -> None:
    """Run one batched ``model.generate`` over left-padded ``prompts``; row ``i`` feeds ``on_tokens[i]``."""
    import torch
    from transformers import (
        GenerationConfig,
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        StoppingCriteria,
        StoppingCriteriaList,
    )

    from glmtune.infer.generate import left_pad

    logging.getLogger("transformers.generation.utils").addFilter(_QUIET)  # a no-op once added
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    ids, mask = left_pad(prompts, pad_id)
    done = [False] * len(prompts)

    class FeedRows(StoppingCriteria):
        """Hands each row's newest token to its callback; a row is finished once its callback says so."""

        def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            for row, tid in enumerate(input_ids[:, -1].tolist()):
                if not done[row] and not on_tokens[row](int(tid)):
                    done[row] = True
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    penalty = float(params.repetition_penalty or 1.0)
    processors = LogitsProcessorList()
    if penalty != 1.0:  # replaces generate's own in its place: the left padding (an end token) is not penalised
        pads = torch.tensor([ids.shape[1] - len(p) for p in prompts], dtype=torch.long)
        processors.append(RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=pads))
    sampling = {"temperature": params.temperature, "top_p": params.top_p, "top_k": 0} if params.do_sample else {}
    config = GenerationConfig(max_new_tokens=params.max_tokens, do_sample=params.do_sample, eos_token_id=stop_ids,
                              pad_token_id=pad_id, use_cache=True, repetition_penalty=penalty, **sampling)
    device = next(model.parameters()).device
    with torch.inference_mode():
        model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config,
                       logits_processor=processors, stopping_criteria=StoppingCriteriaList([FeedRows()]))


def one_at_a_time(generate_fn: GenerateFn) -> BatchGenerateFn:
    """Wrap a one-prompt ``generate_fn`` as a batch function for batches of one."""
    def run(prompts: list[list[int]], params: GenParams, on_tokens: list[OnToken]) -> None:
        if len(prompts) != 1:
            raise ValueError("this generate_fn takes one prompt at a time; use max_batch=1")
        generate_fn(prompts[0], params, on_tokens[0])

    return run
