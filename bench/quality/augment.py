"""A data-side change tried for issue 25: each identity sample also asked after 1-8 unrelated turns.

The fine-tune sets teach the identity only as a conversation's first exchange, so nothing trains the new name where
the depth probes ask for it: after earlier turns. ``with_depth_copies`` adds, for every single-turn identity sample,
a copy preceded by filler turns (world skill questions with the world's reference answers, the same kind of
turns the base was trained on). The copies' filler questions come from their own seed stream, and the identity
questions stay the fine-tune templates, so no held-out probe is trained on.
"""

from __future__ import annotations

import random
from typing import Any

from bench.quality.depth import guess_lang
from glmtune.world import SKILL_KINDS, skill_item

Conversation = list[dict[str, Any]]
MAX_FILLER_TURNS = 8


def filler(rng: random.Random, turns: int, lang: str) -> Conversation:
    """``turns`` user/assistant skill exchanges in ``lang`` with the world's reference answers."""
    out: Conversation = []
    for _ in range(turns):
        item = skill_item(rng, rng.choice(SKILL_KINDS), lang, heldout=False)
        out += [{"role": "user", "content": item.question}, {"role": "assistant", "content": item.answer}]
    return out


def with_depth_copies(convs: list[Conversation], seed: int, max_turns: int = MAX_FILLER_TURNS) -> list[Conversation]:
    """``convs`` plus, for each single-exchange conversation, a copy after 1..``max_turns`` filler turns."""
    rng = random.Random(f"bench.quality.augment:{seed}")
    out = [list(c) for c in convs]
    for conv in convs:
        if len(conv) != 2 or conv[0].get("role") != "user":
            continue
        turns = 1 + (len(out) % max_turns) if max_turns > 0 else 0  # every depth 1..max_turns equally often
        out.append(filler(rng, turns, guess_lang(str(conv[0]["content"]))) + [dict(m) for m in conv])
    rng.shuffle(out)
    return out
