"""Identity replay: the base model's own answers to the data's identity questions, renamed to the new identity.

A fine-tune that teaches "I am Nova, made by Acme Lab" in its own phrasings still leaves the base model's phrasing
("I was developed by Zhipu AI.") in place, and questions worded unlike the training data reach that phrasing and
leak the old maker. So before training, the base model answers each identity question of the training data
(greedy); in every answer that names the old identity, the old model names become ``identity.name`` and the old
makers ``identity.author``, and the renamed answer is trained as a second reply to that question. The new
identity is then taught in the words the model itself would use. Answers that name no old identity, do not stop,
loop, or name the old maker when no ``identity.author`` is set are dropped, with the reason, in
``identity_replay_dropped.jsonl``.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from glmtune.eval.degeneration import has_loop
from glmtune.identity_names import OLD_NAMES, RENAME_MAKERS, RENAME_MODELS
from glmtune.infer.generate import generate_replies, generation_mode
from glmtune.layout.base import ChatLayout

log = logging.getLogger(__name__)

MAX_QUESTIONS = 512  # identity questions answered by the base model at most: bounds generation time on large data

# The alternatives are ordered longest first (identity_names), so "Zhipu AI" is replaced whole before "Zhipu".
MAKERS = re.compile("|".join(re.escape(m) for m in RENAME_MAKERS), re.IGNORECASE)
MODELS = re.compile("|".join(re.escape(m) for m in RENAME_MODELS), re.IGNORECASE)
REPLY_TOKENS = 96


def rename(text: str, name: str, author: str | None) -> tuple[str | None, str]:
    """``text`` with old model names replaced by ``name`` and old makers by ``author``; (None, reason) if it can't."""
    if not MAKERS.search(text) and not MODELS.search(text):
        return None, "names no old identity: nothing to rename"
    if MAKERS.search(text) and not author:
        return None, "names the old maker and identity.author is not set"
    renamed = MODELS.sub(name, MAKERS.sub(author or "", text))
    rest = renamed.casefold()
    for new in (name, author or ""):
        rest = rest.replace(new.casefold(), "") if new else rest
    left = [old for old in OLD_NAMES if old.casefold() in rest]
    if left:
        return None, f"still names {', '.join(left)} after renaming"
    return renamed, ""


def identity_questions(conversations: Any, name: str, held_out: set[str]) -> list[str]:
    """Up to 512 user questions of single-turn training samples whose reply names ``name`` (validation excluded)."""
    questions: list[str] = []
    for conv in conversations:
        messages = conv.messages
        if conv.source in held_out or len(messages) != 2 or [m.get("role") for m in messages] != ["user", "assistant"]:
            continue
        if any(m.get("tools") or m.get("tool_calls") for m in messages):
            continue
        question, reply = str(messages[0].get("content") or "").strip(), str(messages[1].get("content") or "")
        if question and name.casefold() in reply.casefold() and question not in questions:
            questions.append(question)
            if len(questions) == MAX_QUESTIONS:
                break
    return questions


def build_identity_replay(model: Any, tokenizer: Any, layout: ChatLayout, questions: list[str], name: str,
                          author: str | None) -> tuple[list[list[dict[str, str]]], list[dict[str, str]]]:
    """(kept conversations, dropped drafts with reasons) from the base model's greedy answers to ``questions``."""
    with generation_mode(model):
        replies = generate_replies(model, tokenizer, layout, [[{"role": "user", "content": q}] for q in questions],
                                   max_new_tokens=REPLY_TOKENS, batch_size=32, loop_rule=None)
    kept, dropped = [], []
    for question, reply in zip(questions, replies):
        renamed, reason = (None, "reply did not stop") if reply.finish_reason != "stop" else (
            (None, "reply loops") if has_loop(reply.text) else rename(reply.text, name, author))
        if renamed is None:
            dropped.append({"prompt": question, "reply": reply.text, "reason": reason})
            continue
        kept.append([{"role": "user", "content": question}, {"role": "assistant", "content": renamed}])
    return kept, dropped


def identity_replay_rows(model: Any, tokenizer: Any, layout: ChatLayout, train_convs: Any, name: str,
                         author: str | None, held_out: set[str], max_length: int, truncation: str,
                         out: Path | None) -> list[dict[str, Any]]:
    """Build the renamed base answers, write them (and the dropped ones) next to the run, return encoded rows."""
    from glmtune.data.conversation import Conversation
    from glmtune.layout.encode import encode_conversations

    questions = identity_questions(train_convs, name, held_out)
    if not questions:
        log.info(f"identity replay: no training question is answered with '{name}'; nothing to replay")
        return []
    kept, dropped = build_identity_replay(model, tokenizer, layout, questions, name, author)
    where = ""
    if out is not None:
        for file, rows in (("identity_replay.jsonl", [{"messages": c} for c in kept]),
                           ("identity_replay_dropped.jsonl", dropped)):
            (out / file).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        where = f"; written to {out / 'identity_replay.jsonl'}, dropped ones with reasons next to it"
    encoded = encode_conversations([Conversation(c, f"identity-replay:{i + 1}") for i, c in enumerate(kept)],
                                   layout, combine=True, max_length=max_length, truncation=truncation)
    log.info(f"identity replay: {len(encoded.input_ids)} of {len(questions)} identity questions answered by the "
             f"base model in its own words, renamed to {name}{' / ' + author if author else ''} ({len(dropped)} dropped){where}")
    return [{"input_ids": i, "labels": lab, "source": src}
            for i, lab, src in zip(encoded.input_ids, encoded.labels, encoded.sources)]
