"""Self-replay: conversations the base model writes itself, mixed into small fine-tunes against forgetting.

A few dozen samples trained for many epochs pull every answer towards the new data (a tiny model that learns
"I am Nova" starts answering arithmetic with it). Replaying general data helps, but users rarely have the base
model's own training data. The base model can provide its side of it: given general prompts, its greedy replies
are its current behaviour, and training on those pins the rest of the model's behaviour while the task data
moves what it should. The prompts come from glmtune's bundled set of general zh/en prompts
(``resources/replay_prompts.jsonl``), from a user's file, or from the model itself: sampled from an empty user
turn, a chat model writes prompts of the kind it was trained on (the Magpie idea).
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from glmtune.config.loader import ConfigError
from glmtune.eval.degeneration import has_loop
from glmtune.identity_names import OLD_NAMES
from glmtune.infer.generate import generate_replies, generation_mode, left_pad, split_reply
from glmtune.layout.base import ChatLayout, render
from glmtune.progress import generation_progress

log = logging.getLogger(__name__)

SENTINEL = "\u2063glmtune-self-replay\u2063"
PROMPT_TOKENS = 64
REPLY_TOKENS = 128
BATCH = 32
OVERSAMPLE = 3  # prompts drawn per sample wanted: duplicates, run-ons and identity answers are dropped
BUNDLED_PROMPTS = "replay_prompts.jsonl"
SAMPLE_ROUND = 256  # prompts the model samples per round
MIN_KEEP = 0.1  # a round that keeps fewer of its drafts than this ends the sampling


@dataclass
class SelfReplay:
    """The kept conversations and every dropped draft with its reason."""

    conversations: list[list[dict[str, str]]] = field(default_factory=list)
    dropped: list[dict[str, str]] = field(default_factory=list)


def user_turn_frame(tokenizer: Any) -> tuple[str, list[int]]:
    """The rendered text that opens a user turn, and the token ids that can close one."""
    text = render(tokenizer, [{"role": "user", "content": SENTINEL}], add_generation_prompt=True)
    if text.count(SENTINEL) != 1:
        raise ValueError("the chat template does not render the user message verbatim; self-replay is unavailable")
    prefix, suffix = text.split(SENTINEL)
    closing = tokenizer(suffix, add_special_tokens=False)["input_ids"]
    special = set(tokenizer.all_special_ids)
    ends = [i for i in closing if i in special][:1]
    if not ends:
        raise ValueError("the chat template closes a user turn without a special token; self-replay is unavailable")
    return prefix, ends


@torch.inference_mode()
def sample_prompts(model: Any, tokenizer: Any, count: int, seed: int, temperature: float = 1.0) -> list[str]:
    """``count`` user prompts sampled from the model after an empty user-turn opening (unfinished ones dropped)."""
    prefix, ends = user_turn_frame(tokenizer)
    # The model writes the whitespace after the role marker itself ("\n" often merges with the first word), and
    # a prompt ends at any special token: the template's closing token, an end of text or a new role marker.
    ids = tokenizer(prefix.rstrip(), add_special_tokens=False)["input_ids"]
    ends = sorted(set(ends) | set(tokenizer.all_special_ids))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else ends[0]
    device = next(model.parameters()).device
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    prompts: list[str] = []
    try:
        for start in range(0, count, BATCH):
            n = min(BATCH, count - start)
            batch, mask = left_pad([ids] * n, pad)
            out = model.generate(input_ids=batch.to(device), attention_mask=mask.to(device), do_sample=True,
                                 temperature=temperature, top_p=0.95, max_new_tokens=PROMPT_TOKENS,
                                 eos_token_id=ends, pad_token_id=pad, use_cache=True)
            for row in out[:, batch.shape[1]:].tolist():
                text_ids, stop = split_reply(row, ends, pad)
                prompts.append(tokenizer.decode(text_ids, skip_special_tokens=True).strip() if stop is not None else "")
            if not any(prompts):  # the first batch finished no prompt: this model cannot write any (untrained)
                break
    finally:
        torch.random.set_rng_state(generator_state)
    return prompts


def read_prompts(source: str) -> list[str]:
    """Prompts of ``bundled`` or a file: JSONL rows with ``prompt`` or ``messages`` (last user turn), else lines."""
    from importlib import resources

    if source == "bundled":
        name, text = f"glmtune/resources/{BUNDLED_PROMPTS}", (
            resources.files("glmtune") / "resources" / BUNDLED_PROMPTS).read_text(encoding="utf-8")
    else:
        try:
            name, text = source, Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"data.self_replay_prompts: cannot read {source}: {exc}") from None
    prompts = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if not line.startswith("{"):
            prompts.append(line)
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{name}:{number}: data.self_replay_prompts: not valid JSON ({exc})") from None
        messages = row.get("messages") if isinstance(row, dict) else None
        users = [m.get("content") for m in messages or [] if isinstance(m, dict) and m.get("role") == "user"]
        prompt = row.get("prompt") if isinstance(row, dict) and "prompt" in row else (users[-1] if users else None)
        if not isinstance(prompt, str) or not prompt.strip():
            raise ConfigError(f"{name}:{number}: data.self_replay_prompts: expected a 'prompt' string or "
                              "'messages' with a user turn")
        prompts.append(prompt.strip())
    if not prompts:
        raise ConfigError(f"data.self_replay_prompts: no prompts in {name}")
    return prompts


def _names(identity_names: tuple[str, ...]) -> list[str]:
    return [n.casefold() for n in (*OLD_NAMES, *identity_names) if n and n.strip()]


def _prompt_drop_reason(prompt: str, seen: set[str], names: list[str]) -> str:
    """Why a drafted prompt is dropped before it is answered ("" when it is kept)."""
    return ("unfinished or empty prompt" if not prompt else
            "duplicate or training prompt" if prompt in seen else
            "names an identity" if any(n in prompt.casefold() for n in names) else "")


def _reply_drop_reason(reply: Any, names: list[str]) -> str:
    """Why the base model's greedy reply to a prompt is dropped ("" when it is kept)."""
    return ("reply did not stop" if reply.finish_reason != "stop" else
            "empty reply" if not reply.text else
            "reply loops" if has_loop(reply.text) else
            "names an identity" if any(n in reply.text.casefold() for n in names) else "")


@dataclass
class _DraftJudge:
    """Keeps the drafts whose prompt and greedy reply pass every filter, up to ``count`` in ``result``."""

    model: Any
    tokenizer: Any
    layout: ChatLayout
    count: int
    seen: set[str]
    names: list[str]
    result: SelfReplay

    def __call__(self, drafts: list[str]) -> int:
        """Judge one batch of drafted prompts; return how many conversations it added."""
        prompts: list[str] = []
        for prompt in drafts:
            reason = _prompt_drop_reason(prompt, self.seen, self.names)
            if reason:
                self.result.dropped.append({"prompt": prompt, "reason": reason})
                continue
            self.seen.add(prompt)
            prompts.append(prompt)
        with generation_progress(self.model, len(prompts), "self-replay: answering prompts"):
            replies = generate_replies(self.model, self.tokenizer, self.layout,
                                       [[{"role": "user", "content": p}] for p in prompts],
                                       max_new_tokens=REPLY_TOKENS, batch_size=BATCH, loop_rule=None)
        before = len(self.result.conversations)
        for prompt, reply in zip(prompts, replies):
            reason = _reply_drop_reason(reply, self.names)
            if reason or len(self.result.conversations) >= self.count:
                self.result.dropped.append({"prompt": prompt, "reply": reply.text,
                                            "reason": reason or "enough samples"})
                continue
            self.result.conversations.append([{"role": "user", "content": prompt},
                                              {"role": "assistant", "content": reply.text}])
        return len(self.result.conversations) - before


def _draft_and_judge(judge: _DraftJudge, model: Any, tokenizer: Any, count: int, seed: int, source: str) -> None:
    """Judge the given prompts (plus a first round the model samples), then sample more rounds while worth it."""
    result = judge.result
    given = read_prompts("bundled" if source == "auto" else source) if source != "model" else []
    random.Random(seed).shuffle(given)
    drafts = given[:count * OVERSAMPLE]
    sampling = source in ("auto", "model")
    wanted = min(SAMPLE_ROUND, count * OVERSAMPLE - len(drafts)) if sampling else 0
    if wanted > 0:
        with generation_progress(model, wanted, "self-replay: sampling prompts", "prompt"):
            drafts += sample_prompts(model, tokenizer, wanted, seed)
    kept = judge(drafts)
    rounds = 1
    # Sample more in rounds while the model's own prompts are worth it: an untrained or poor writer of
    # prompts keeps almost none, and thousands of drafts would only cost time.
    while (sampling and wanted > 0 and len(result.conversations) < count and kept > 0
           and kept >= MIN_KEEP * len(drafts)):
        wanted = min(SAMPLE_ROUND, (count - len(result.conversations)) * OVERSAMPLE)
        with generation_progress(model, wanted, f"self-replay: sampling prompts (round {rounds + 1})", "prompt"):
            drafts = sample_prompts(model, tokenizer, wanted, seed + rounds)
        kept, rounds = judge(drafts), rounds + 1


def build_self_replay(model: Any, tokenizer: Any, layout: ChatLayout, count: int, seed: int,
                      avoid_prompts: set[str], identity_names: tuple[str, ...] = (), source: str = "model"
                      ) -> SelfReplay:
    """Up to ``count`` (prompt, base reply) conversations; drafts that would teach the wrong thing are dropped.

    ``source``: ``model`` (prompts the model samples), ``bundled`` or a file (see ``read_prompts``), or ``auto``
    (the bundled prompts, then sampled ones). Dropped: prompts that did not finish, duplicates and prompts of the
    training data, replies that ran to the length limit or loop, and any draft that names an identity (the old
    model's or the new one), so that self-replay never argues with the identity the fine-tune teaches.
    """
    result = SelfReplay()
    if count <= 0:
        return result
    judge = _DraftJudge(model, tokenizer, layout, count, {p.strip() for p in avoid_prompts},
                        _names(identity_names), result)
    with generation_mode(model):
        _draft_and_judge(judge, model, tokenizer, count, seed, source)
    random.Random(seed).shuffle(result.conversations)
    return result


def write_self_replay(result: SelfReplay, out: Path) -> Path:
    """Write the kept conversations (GLM-4 JSONL) and the dropped drafts with reasons next to the run."""
    kept = out / "self_replay.jsonl"
    with kept.open("w", encoding="utf-8") as fh:
        for conv in result.conversations:
            fh.write(json.dumps({"messages": conv}, ensure_ascii=False) + "\n")
    with (out / "self_replay_dropped.jsonl").open("w", encoding="utf-8") as fh:
        for row in result.dropped:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return kept


def add_context(conversations: list[list[dict[str, Any]]], task: list[list[dict[str, Any]]], share: float,
                seed: int, max_turns: int = 1) -> int:
    """Follow a ``share`` of the self-replay exchanges with a single-turn training conversation, in place.

    The training data usually asks its questions in a fresh chat; these samples ask them after 1..``max_turns``
    exchanges of the base model's own (every depth equally often; the earlier ones are borrowed from the other
    self-replay samples), so what the fine-tune teaches, an identity above all, also holds deep in a
    conversation. Returns how many.
    """
    if share <= 0 or not task:
        return 0
    rng = random.Random(seed + 2)
    order = list(task)
    rng.shuffle(order)
    count = min(len(conversations), round(share * len(conversations)))
    lenders = [list(c) for c in conversations[count:] or conversations[:count]]
    for i in range(count):
        earlier = rng.sample(range(len(lenders)), min(i % max(1, max_turns), len(lenders)))
        borrowed = [m for j in earlier for m in lenders[j]]
        conversations[i] = borrowed + conversations[i] + order[i % len(order)]
    return count


def single_turn(messages: list[dict[str, Any]]) -> bool:
    """A plain user question and assistant reply (no system prompt, tools or calls): safe to put after others."""
    return (len(messages) == 2 and [m.get("role") for m in messages] == ["user", "assistant"]
            and not any(m.get("tools") or m.get("metadata") or m.get("tool_calls") for m in messages))


def self_replay_rows(model: Any, tokenizer: Any, layout: ChatLayout, ratio: float, train_convs: Any,
                     n_train: int, seed: int, max_length: int, truncation: str, identity_names: tuple[str, ...],
                     out: Path | None, source: str = "auto", context: float = 0.0,
                     held_out: set[str] | None = None, context_turns: int = 1) -> list[dict[str, Any]]:
    """Build ``ratio`` x ``n_train`` self-replay samples, write them next to the run, return encoded rows.

    ``context``: the share of them followed by a training conversation (never one from ``held_out`` sources,
    the validation split), after 1..``context_turns`` exchanges; every reply of such a sample is trained.
    """
    from glmtune.data.conversation import Conversation
    from glmtune.layout.encode import encode_conversations

    wanted = round(ratio * n_train)
    convs_list = list(train_convs)
    avoid = {m["content"] for c in convs_list for m in c.messages if m.get("role") == "user"}
    try:
        result = build_self_replay(model, tokenizer, layout, wanted, seed, avoid, identity_names, source)
    except ValueError as exc:
        log.info(f"self-replay: off ({exc})")
        return []
    task = [c.messages for c in convs_list if c.source not in (held_out or set()) and single_turn(c.messages)]
    in_context = add_context(result.conversations, task, context, seed, context_turns)
    where = ""
    if out is not None:
        where = f"; written to {write_self_replay(result, out)}, dropped drafts with reasons in self_replay_dropped.jsonl"
    convs = [Conversation(c, f"self-replay:{i + 1}") for i, c in enumerate(result.conversations)]
    rows: list[dict[str, Any]] = []
    for combine, part in ((False, convs[:in_context]), (True, convs[in_context:])):
        encoded = encode_conversations(part, layout, combine=combine, max_length=max_length, truncation=truncation)
        rows += [{"input_ids": i, "labels": lab, "source": src}
                 for i, lab, src in zip(encoded.input_ids, encoded.labels, encoded.sources)]
    log.info(f"self-replay: {len(rows)} of {wanted} wanted samples answered by the base model itself "
             f"(prompts: {source}; {in_context} followed by a training conversation after 1-{context_turns} "
             f"exchanges; {len(result.dropped)} drafts "
             f"dropped){where}")
    return rows
