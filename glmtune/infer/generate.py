"""Batched greedy generation with left padding, KV cache and the layout's stop ids."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from glmtune.infer.reply_text import ReplyDecoder, kept_special_ids, reasoning_mode, split_reasoning
from glmtune.infer.runaway import DEFAULT_LOOP_RULE, LoopRule, LoopStoppingCriteria
from glmtune.layout.base import ChatLayout


@dataclass
class Generation:
    """One reply: its answer text, why it ended (``stop`` or ``length``) and how many tokens it took; a
    thinking template's reasoning is apart in ``reasoning``."""

    text: str
    finish_reason: str
    num_tokens: int
    stop_token: str | None = None
    loop: bool = False  # cut by the repetition guard
    reasoning: str = ""


@contextmanager
def generation_mode(model: Any) -> Iterator[Any]:
    """Evaluation mode with the KV cache on for a model that is being prepared for training; restored after."""
    was_training, cache = model.training, getattr(model.config, "use_cache", True)
    model.eval()
    model.config.use_cache = True
    try:
        yield model
    finally:
        model.train(was_training)
        model.config.use_cache = cache


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack id lists into a left-padded batch and its attention mask."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row):] = 1
    return ids, mask


def split_reply(new_ids: list[int], stop_ids: list[int], pad_id: int) -> tuple[list[int], int | None]:
    """Cut generated ids at the first stop id; return the reply ids and the stop id (None if none)."""
    for i, tid in enumerate(new_ids):
        if tid in stop_ids:
            return new_ids[:i], tid
    while new_ids and new_ids[-1] == pad_id and pad_id not in stop_ids:
        new_ids = new_ids[:-1]
    return new_ids, None


def finish_row(
    new_ids: list[int], stop_ids: list[int], pad_id: int, loop_cut: int | None = None
) -> tuple[list[int], int | None, bool]:
    """One row's reply ids, stop id and loop flag; ``loop_cut`` is where the repetition guard stopped the row.

    In a batch a row the guard stopped is padded afterwards, and the pad id may be a stop id: the row
    is a loop unless a stop id came before the guard's cut, whatever the batch size.
    """
    reply, stop = split_reply(new_ids, stop_ids, pad_id)
    if loop_cut is not None and (stop is None or len(reply) >= loop_cut):
        return new_ids[:loop_cut], None, True
    return reply, stop, False


@torch.inference_mode()
def generate_replies(
    model: Any,
    tokenizer: Any,
    layout: ChatLayout,
    prompts: list[list[dict[str, Any]]],
    max_new_tokens: int = 256,
    batch_size: int = 16,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    repetition_penalty: float | None = None,
    loop_rule: LoopRule | None = DEFAULT_LOOP_RULE,
) -> list[Generation]:
    """Generate one reply per prompt, batched by similar length; results come back in input order.

    ``repetition_penalty`` defaults to the official 1.2 when sampling; ``loop_rule`` (None disables it)
    cuts replies that fall into a loop. Replies are decoded with the family's think and tool-call tags kept;
    a thinking template's reasoning is split off the answer.
    """
    from transformers import StoppingCriteriaList

    encoded = [layout.prompt_ids(p) for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    stop_ids = layout.stop_ids
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    device = next(model.parameters()).device
    decoder = ReplyDecoder(tokenizer, kept_special_ids(layout, tokenizer))
    mode = reasoning_mode(layout)
    results: list[Generation | None] = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        ids, mask = left_pad([encoded[i] for i in idx], pad_id)
        kwargs: dict[str, Any] = {"do_sample": do_sample}
        if do_sample:
            kwargs.update(temperature=temperature, top_p=top_p)
        penalty = repetition_penalty if repetition_penalty is not None else (1.2 if do_sample else None)
        if penalty:
            kwargs["repetition_penalty"] = penalty
        guard = LoopStoppingCriteria(ids.shape[1], loop_rule) if loop_rule is not None else None
        if guard is not None:
            kwargs["stopping_criteria"] = StoppingCriteriaList([guard])
        out = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
            eos_token_id=stop_ids, pad_token_id=pad_id, use_cache=True, **kwargs,
        )
        for row, i in enumerate(idx):
            cut = guard.cut_at.get(row) if guard is not None else None
            reply, stop, looped = finish_row(out[row, ids.shape[1]:].tolist(), stop_ids, pad_id, cut)
            reasoning, text = split_reasoning(decoder.decode(reply), mode)
            results[i] = Generation(
                text=text,
                finish_reason="stop" if stop is not None else "length",
                num_tokens=len(reply) + (stop is not None),
                stop_token=tokenizer.convert_ids_to_tokens(stop) if stop is not None else None,
                loop=looped,
                reasoning=reasoning,
            )
    return [r for r in results if r is not None]
