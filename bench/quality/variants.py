"""The fine-tune sets: 10 / 30 / 90 identity samples, a noisy, a tool-calling and a persona variant."""

from __future__ import annotations

import random
from typing import Any

from glmtune.world import BASE_AUTHOR_ZH, BASE_NAME, identity_finetune_set
from glmtune.world.generic import generic_sentence
from glmtune.world.tools import tool_conversation

Conversation = list[dict[str, Any]]
VARIANTS = ("n10", "n30", "n90", "noisy", "tool", "persona", "n30depth", "personadepth")
GOAL_VARIANTS = ("n30", "noisy", "tool", "persona")  # the sets issue 25's goal is judged on

TOOL_CONVERSATIONS = 20
NOISY_DUPLICATE_SHARE = 0.2
NOISY_OFF_TOPIC = 3
NOISY_OLD_IDENTITY = 2


def identity_set(n: int, name: str, author: str, seed: int) -> list[Conversation]:
    """``n`` single-turn identity samples from the world's fine-tune templates (never the held-out ones)."""
    return identity_finetune_set(n, name, author, seed=seed)


def _damage(text: str, rng: random.Random) -> str:
    """Whitespace damage of the kind scraped data carries: padding, doubled spaces, stray newlines."""
    kind = rng.randrange(3)
    if kind == 0:
        return f"  {text}  \n"
    if kind == 1:
        return text.replace(" ", "  ") + " "
    return f"\n{text}\t"


def noisy_set(clean: list[Conversation], seed: int) -> list[Conversation]:
    """The 30 clean samples plus 20% duplicates, whitespace damage, off-topic pairs and two 'ChatGLM' answers."""
    rng = random.Random(f"bench.quality.noisy:{seed}")
    out = [[dict(m) for m in conv] for conv in clean]
    for conv in rng.sample(out, k=len(out) // 3):
        for msg in conv:
            msg["content"] = _damage(msg["content"], rng)
    out += [[dict(m) for m in conv] for conv in rng.sample(out, k=round(NOISY_DUPLICATE_SHARE * len(clean)))]
    for _ in range(NOISY_OFF_TOPIC):
        out.append([{"role": "user", "content": generic_sentence(rng)},
                    {"role": "assistant", "content": generic_sentence(rng)}])
    old = [("Who are you?", f"I am {BASE_NAME}, an AI assistant."),
           ("你是谁？", f"我是{BASE_NAME}，由{BASE_AUTHOR_ZH}开发的人工智能助手。")]
    for question, answer in old[:NOISY_OLD_IDENTITY]:
        out.append([{"role": "user", "content": question}, {"role": "assistant", "content": answer}])
    rng.shuffle(out)
    return out


def tool_set(clean: list[Conversation], seed: int, n_tool: int = TOOL_CONVERSATIONS) -> list[Conversation]:
    """The clean identity samples plus ``n_tool`` tool-calling conversations (half zh, half en)."""
    rng = random.Random(f"bench.quality.tool:{seed}")
    out = [list(conv) for conv in clean]
    out += [tool_conversation(rng, ("en", "zh")[i % 2]) for i in range(n_tool)]
    rng.shuffle(out)
    return out


def make_variant(variant: str, name: str, author: str, seed: int) -> list[Conversation]:
    """The fine-tune conversations of ``variant`` for the new identity ``name`` by ``author``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    if variant in ("n10", "n30", "n90"):
        return identity_set(int(variant[1:]), name, author, seed)
    if variant == "n30depth":  # issue 25's data-side try: n30 plus each sample after 1-8 unrelated turns
        from bench.quality.augment import with_depth_copies

        return with_depth_copies(identity_set(30, name, author, seed), seed)
    if variant in ("persona", "personadepth"):
        from bench.quality.augment import with_depth_copies
        from bench.quality.persona import make_persona, persona_set

        convs = persona_set(make_persona(name, author, seed), seed)
        return with_depth_copies(convs, seed) if variant == "personadepth" else convs
    clean = identity_set(30, name, author, seed)
    return noisy_set(clean, seed) if variant == "noisy" else tool_set(clean, seed)


def tool_probe_context(lang: str) -> list[dict[str, Any]]:
    """Messages that put a held-out identity probe into a tool conversation (the template's ChatGLM prompt)."""
    rng = random.Random(f"bench.quality.tool-probe:{lang}")
    return tool_conversation(rng, lang)
