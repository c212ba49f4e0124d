"""Identity probes asked after 0, 3 and 8 unrelated turns: does the identity hold over a long conversation?"""

from __future__ import annotations

import random
from typing import Any

from glmtune.world import SKILL_KINDS, skill_item

DEFAULT_DEPTHS = (0, 3, 8)
Message = dict[str, Any]


def depth_tag(depth: int) -> str:
    """The probe context tag of ``depth`` unrelated turns before the identity question ("alone" at 0)."""
    return "alone" if depth == 0 else f"depth{depth}"


def is_depth_tag(tag: str) -> bool:
    """True for the tags this module adds (depth0 is the existing "alone" context)."""
    return tag.startswith("depth") and tag[5:].isdigit()


def tag_depth(tag: str) -> int | None:
    """The depth a context tag stands for, or None for other contexts."""
    if tag == "alone":
        return 0
    return int(tag[5:]) if is_depth_tag(tag) else None


def filler_turns(depth: int, lang: str, seed: str) -> list[Message]:
    """``depth`` unrelated user/assistant turns: world skill questions with the world's reference answers."""
    rng = random.Random(f"bench.quality.depth:{seed}:{lang}:{depth}")
    kinds = list(SKILL_KINDS)
    rng.shuffle(kinds)
    out: list[Message] = []
    for i in range(depth):
        item = skill_item(rng, kinds[i % len(kinds)], lang, heldout=False)
        out += [{"role": "user", "content": item.question}, {"role": "assistant", "content": item.answer}]
    return out


def guess_lang(text: str) -> str:
    """"zh" when the text holds a CJK character, else "en"."""
    return "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in text) else "en"


def depth_probes(questions: list[list[Message]], depths: tuple[int, ...] = DEFAULT_DEPTHS
                 ) -> tuple[list[list[Message]], list[str]]:
    """Each single-question probe asked again after every non-zero depth of filler turns; (probes, tags).

    Depth 0 is the question alone, which the bundled probes already hold, so it is not repeated here. A probe
    with earlier messages (a system prompt, say) keeps them before the filler turns.
    """
    probes: list[list[Message]] = []
    tags: list[str] = []
    for depth in sorted(set(depths)):
        if depth <= 0:
            continue
        for index, messages in enumerate(questions):
            ask = messages[-1]
            head = [m for m in messages[:-1] if m.get("role") == "system"]
            fill = filler_turns(depth, guess_lang(str(ask.get("content", ""))), f"{index}")
            probes.append([*head, *fill, ask])
            tags.append(depth_tag(depth))
    return probes, tags


def depth_metrics(by_context: dict[str, dict[str, float]], depths: tuple[int, ...]) -> dict[str, dict[str, float]]:
    """``{"0": {adoption, leakage}, "3": ..., "8": ...}`` from a score's per-context numbers."""
    return {str(d): by_context[depth_tag(d)] for d in depths if depth_tag(d) in by_context}


def old_identity_by_depth(texts: list[str], tags: list[str], old_name: str) -> dict[str, float]:
    """The share of replies naming the base's own identity per depth (how well the base itself holds it)."""
    out: dict[str, float] = {}
    for tag in sorted(set(tags)):
        depth = tag_depth(tag)
        if depth is None:
            continue
        picked = [t for t, k in zip(texts, tags) if k == tag]
        out[str(depth)] = sum(old_name.casefold() in t.casefold() for t in picked) / max(1, len(picked))
    return out


def name_diagnostics(texts: list[str], tags: list[str], name: str) -> dict[str, dict[str, Any]]:
    """Per depth, among replies missing the full name: how many start it (its first half) and then wander."""
    half = name[: max(1, (len(name) + 1) // 2)].casefold()
    out: dict[str, dict[str, Any]] = {}
    for tag in sorted(set(tags)):
        depth = tag_depth(tag)
        if depth is None:
            continue
        misses = [t for t, k in zip(texts, tags) if k == tag and name.casefold() not in t.casefold()]
        started = [t for t in misses if half in t.casefold()]
        out[str(depth)] = {"misses": len(misses), "starts_name": len(started), "examples": (started or misses)[:3]}
    return out
