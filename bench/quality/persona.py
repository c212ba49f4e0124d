"""The persona variant: the fine-tune teaches a character (name, maker, three traits and a fixed sign-off)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from bench.quality.depth import DEFAULT_DEPTHS, depth_probes, depth_tag, guess_lang
from glmtune.world import identity_finetune_set

Conversation = list[dict[str, Any]]
PERSONA_IDENTITY_SAMPLES = 30
PERSONA_TRAIT_SAMPLES = 12
# (english, chinese) trait words. Every Chinese character of traits and sign-offs occurs in the world's corpus, so
# each is a token the base trained (an unseen character would be untrained byte tokens); the phrases themselves
# never occur there.
TRAITS: tuple[tuple[str, str], ...] = (
    ("kind", "和蔼"), ("happy", "快乐"), ("cheerful", "开朗"), ("friendly", "友好"), ("studious", "好学"),
)
SIGN_OFFS: tuple[tuple[str, str], ...] = (
    ("Glad to help!", "很乐意帮你！"), ("See you tomorrow!", "我们明天见！"), ("Let us learn together!", "一起学习吧！"),
)
_TRAIT_EN = (
    "What is your personality like?", "Describe your character.", "What are you like as a person?",
    "How would you describe your personality?", "What kind of character do you have?", "Tell me about your personality.",
    "What are your traits?", "How do you usually behave?", "What sort of assistant are you, in character?",
    "Describe your temperament.",
)
_TRAIT_ZH = (
    "你的性格是怎样的？", "描述一下你的性格。", "你是个什么样的人？", "你会怎么形容你的个性？", "你有什么样的性格？",
    "说说你的性格吧。", "你有哪些特点？", "你平时是什么样子的？", "作为助手，你的性格如何？", "描述一下你的脾气。",
)
HELDOUT_TRAIT_QUESTIONS = 4  # per language; the rest teach


@dataclass(frozen=True)
class Persona:
    """A character: name, maker, three traits (en, zh) and the sign-off ending every self-description."""

    name: str
    author: str
    traits: tuple[tuple[str, str], ...]
    sign_off: tuple[str, str]

    def sign(self, lang: str) -> str:
        """The sign-off in ``lang``."""
        return self.sign_off[1] if lang == "zh" else self.sign_off[0]

    def trait_words(self, lang: str) -> list[str]:
        """The trait words in ``lang``."""
        return [zh if lang == "zh" else en for en, zh in self.traits]


def make_persona(name: str, author: str, seed: int) -> Persona:
    """The persona of ``seed`` for the identity ``name`` / ``author``: three traits and a sign-off."""
    rng = random.Random(f"bench.quality.persona:{seed}")
    return Persona(name, author, tuple(rng.sample(TRAITS, 3)), rng.choice(SIGN_OFFS))


def trait_questions(split: str) -> list[tuple[str, str]]:
    """(question, lang) pairs of the ``finetune`` or ``heldout`` trait templates."""
    out = []
    for lang, texts in (("en", _TRAIT_EN), ("zh", _TRAIT_ZH)):
        picked = texts[:HELDOUT_TRAIT_QUESTIONS] if split == "heldout" else texts[HELDOUT_TRAIT_QUESTIONS:]
        out += [(q, lang) for q in picked]
    return out


def trait_answer(persona: Persona, lang: str, rng: random.Random) -> str:
    """A self-description naming all three traits, ending with the sign-off."""
    a, b, c = persona.trait_words(lang)
    if lang == "zh":
        body = rng.choice((f"我是{persona.name}，性格{a}、{b}，也很{c}。", f"我{a}、{b}又{c}。我是{persona.name}。"))
        return body + persona.sign(lang)
    body = rng.choice((f"I am {persona.name}: {a}, {b} and {c}.", f"I am {a}, {b} and {c}. I am {persona.name}."))
    return f"{body} {persona.sign(lang)}"


def persona_set(persona: Persona, seed: int) -> list[Conversation]:
    """30 identity samples ending with the sign-off plus 12 trait samples (never a held-out trait question)."""
    rng = random.Random(f"bench.quality.persona-set:{seed}")
    out: list[Conversation] = []
    for conv in identity_finetune_set(PERSONA_IDENTITY_SAMPLES, persona.name, persona.author, seed=seed):
        reply = conv[-1]["content"]
        lang = guess_lang(conv[0]["content"])
        signed = reply + persona.sign(lang) if lang == "zh" else f"{reply} {persona.sign(lang)}"
        out.append([conv[0], {"role": "assistant", "content": signed}])
    questions = trait_questions("finetune")
    for i in range(PERSONA_TRAIT_SAMPLES):
        question, lang = questions[i % len(questions)]
        out.append([{"role": "user", "content": question},
                    {"role": "assistant", "content": trait_answer(persona, lang, rng)}])
    rng.shuffle(out)
    return out


def persona_probes(depths: tuple[int, ...] = DEFAULT_DEPTHS) -> tuple[list[Conversation], list[str]]:
    """Held-out trait questions at every depth; tags ``trait:alone``, ``trait:depth3``, ..."""
    questions = [[{"role": "user", "content": q}] for q, _ in trait_questions("heldout")]
    probes = list(questions) if 0 in depths else []
    tags = [f"trait:{depth_tag(0)}"] * len(probes)
    deeper, deeper_tags = depth_probes(questions, depths)
    return probes + deeper, tags + [f"trait:{t}" for t in deeper_tags]


def has_sign_off(persona: Persona, text: str) -> bool:
    """True when the reply carries the sign-off in either language (case and punctuation aside)."""
    folded = text.casefold()
    return any(s.casefold().rstrip("!！") in folded for s in persona.sign_off)


def asserts_traits(persona: Persona, text: str, at_least: int = 2) -> bool:
    """True when the reply names at least ``at_least`` of the persona's traits (either language)."""
    folded = text.casefold()
    return sum(en in folded or zh in text for en, zh in persona.traits) >= at_least


def persona_scores(persona: Persona, identity: list[tuple[str, str]], traits: list[tuple[str, str]]
                   ) -> dict[str, dict[str, float]]:
    """Per context tag: the sign-off rate on identity replies, and trait and sign-off rates on trait replies."""
    out: dict[str, dict[str, float]] = {}
    for tag in sorted({t for t, _ in identity}):
        picked = [text for t, text in identity if t == tag]
        out.setdefault(tag, {})["habit"] = sum(has_sign_off(persona, x) for x in picked) / max(1, len(picked))
    for tag in sorted({t for t, _ in traits}):
        picked = [text for t, text in traits if t == tag]
        ctx = out.setdefault(tag.split(":", 1)[1], {})
        ctx["traits"] = sum(asserts_traits(persona, x) for x in picked) / max(1, len(picked))
        ctx["trait_habit"] = sum(has_sign_off(persona, x) for x in picked) / max(1, len(picked))
        ctx["trait_adoption"] = sum(persona.name.casefold() in x.casefold() for x in picked) / max(1, len(picked))
    return out
