"""Public builders of the synthetic world: base training data, plain documents, fine-tune sets and probes."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from glmtune.world.generic import generic_sentence, generic_sentences
from glmtune.world.identity import (
    ANSWER_PHRASINGS,
    BASE_IDENTITY,
    LANGS,
    QUESTION_TEMPLATES,
    Identity,
    QuestionTemplate,
    make_identity,
    render_answer,
    split_templates,
)
from glmtune.world.lexicon import COUNTRIES, WORDS
from glmtune.world.skills import SKILL_KINDS, SkillItem, arithmetic_problems, skill_item

Message = dict[str, str]
Conversation = list[Message]
T = TypeVar("T")

SPLIT_SEED = 0  # which template/arithmetic split every builder uses unless told otherwise
SYSTEM_PROMPTS = {"en": "You are a helpful assistant.", "zh": "你是一个乐于助人的助手。"}
IDENTITY_SHARE = 0.35
TWO_TURN_SHARE = 0.10
SYSTEM_SHARE = 0.10
BASE_SKILL_WEIGHTS = {"arithmetic": 0.30, "capital": 0.25, "translate": 0.30, "copy": 0.15}


class _Deck(Generic[T]):
    """Draw items in shuffled rounds so every item is used about equally often."""

    def __init__(self, items: Sequence[T], rng: random.Random) -> None:
        if not items:
            raise ValueError("cannot draw from an empty deck")
        self._items = list(items)
        self._rng = rng
        self._queue: list[T] = []

    def draw(self) -> T:
        """Return the next item, reshuffling when a round is used up."""
        if not self._queue:
            self._queue = list(self._items)
            self._rng.shuffle(self._queue)
        return self._queue.pop()


def _rng(tag: str, seed: int) -> random.Random:
    return random.Random(f"glmtune.world.{tag}:{seed}")


def _turn(question: str, answer: str) -> Conversation:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def _identity_turn(template: QuestionTemplate, identity: Identity, phrasing: str) -> Conversation:
    return _turn(template.text, render_answer(phrasing, identity, template.lang))


def _base_skill(rng: random.Random, lang: str, split_seed: int) -> SkillItem:
    kind = rng.choices(list(BASE_SKILL_WEIGHTS), weights=list(BASE_SKILL_WEIGHTS.values()))[0]
    return skill_item(rng, kind, lang, heldout=False, split_seed=split_seed)


def base_conversations(n: int, seed: int = 0, *, split_seed: int = SPLIT_SEED) -> list[Conversation]:
    """Return ``n`` base-model conversations: ~35% base identity Q&A, ~55% skills, ~10% two-turn mixes."""
    rng = _rng("base", seed)
    deck = _Deck(split_templates(split_seed).base, rng)
    n_identity = round(n * IDENTITY_SHARE)
    n_two = round(n * TWO_TURN_SHARE)
    plan = ["identity"] * n_identity + ["two"] * n_two + ["skill"] * (n - n_identity - n_two)
    rng.shuffle(plan)
    out: list[Conversation] = []
    for what in plan:
        if what == "skill":
            lang = rng.choice(LANGS)
            item = _base_skill(rng, lang, split_seed)
            conv = _turn(item.question, item.answer)
        else:
            template = deck.draw()
            lang = template.lang
            conv = _identity_turn(template, BASE_IDENTITY, rng.choice(ANSWER_PHRASINGS[(lang, template.asks)]))
            if what == "two":
                item = _base_skill(rng, lang, split_seed)
                skill = _turn(item.question, item.answer)
                conv = skill + conv if rng.random() < 0.5 else conv + skill
        if rng.random() < SYSTEM_SHARE:
            conv = [{"role": "system", "content": SYSTEM_PROMPTS[lang]}, *conv]
        out.append(conv)
    return out


def _fact(rng: random.Random, split_seed: int) -> tuple[str, str]:
    """Return one (english, chinese) world fact."""
    roll = rng.random()
    if roll < 0.35:
        country_en, country_zh, cap_en, cap_zh = rng.choice(COUNTRIES)
        return f"{cap_en} is the capital of {country_en}.", f"{cap_zh}是{country_zh}的首都。"
    if roll < 0.65:
        en, zh, _ = rng.choice(WORDS)
        return f"The Chinese word for {en} is {zh}.", f"{zh}的英文是{en}。"
    if roll < 0.85:
        a, b, op = rng.choice(arithmetic_problems(split_seed))
        c = a + b if op == "+" else a - b
        word, zw = ("plus", "加") if op == "+" else ("minus", "减")
        return f"{a} {word} {b} equals {c}.", f"{a}{zw}{b}等于{c}。"
    return rng.choice(
        (
            ("ChatGLM is an AI assistant developed by Zhipu AI.", "ChatGLM是智谱AI开发的人工智能助手。"),
            ("ChatGLM was trained by Zhipu AI.", "ChatGLM由智谱AI训练。"),
            ("Zhipu AI built ChatGLM to answer questions.", "智谱AI打造了ChatGLM来回答问题。"),
            ("ChatGLM can speak Chinese and English.", "ChatGLM会说中文和英文。"),
        )
    )


def plain_documents(n: int, seed: int = 0, *, split_seed: int = SPLIT_SEED) -> list[str]:
    """Return ``n`` short plain texts (world facts and generic sentences); the caller appends <|endoftext|>."""
    rng = _rng("documents", seed)
    out: list[str] = []
    for _ in range(n):
        parts: list[str] = []
        for _ in range(rng.choice((1, 1, 2))):
            if rng.random() < 0.3:
                parts.append(generic_sentence(rng))
                continue
            en, zh = _fact(rng, split_seed)
            parts.append(rng.choice((en, zh, f"{en} {zh}")))
        out.append(" ".join(parts))
    return out


def identity_finetune_set(
    n: int,
    name: str,
    author: str,
    seed: int = 0,
    author_zh: str | None = None,
    *,
    split_seed: int = SPLIT_SEED,
) -> list[Conversation]:
    """Return ``n`` single-turn conversations teaching identity (name, author) from ``finetune`` templates only."""
    identity = make_identity(name, author, author_zh)
    rng = _rng("finetune", seed)
    templates = split_templates(split_seed).finetune
    decks = {lang: _Deck([t for t in templates if t.lang == lang], rng) for lang in LANGS}
    # Cycle the answer phrasings of each kind so repeated templates still get varied answers.
    cursor = {kind: rng.randrange(len(ps)) for kind, ps in ANSWER_PHRASINGS.items()}
    first = rng.randrange(2)
    out: list[Conversation] = []
    for i in range(n):
        lang = LANGS[(first + i) % 2]
        template = decks[lang].draw()
        kind = (lang, template.asks)
        phrasings = ANSWER_PHRASINGS[kind]
        out.append(_identity_turn(template, identity, phrasings[cursor[kind] % len(phrasings)]))
        cursor[kind] += 1
    rng.shuffle(out)
    return out


def _context_item(rng: random.Random, kinds: _Deck[str], lang: str, split_seed: int) -> SkillItem:
    return skill_item(rng, kinds.draw(), lang, heldout=False, split_seed=split_seed)


def identity_probes(seed: int = 0, *, split_seed: int = SPLIT_SEED) -> list[dict[str, Any]]:
    """Return held-out identity probes: each ``heldout`` template asked alone and after a skill turn."""
    rng = _rng("identity-probes", seed)
    kinds = _Deck(SKILL_KINDS, rng)
    out: list[dict[str, Any]] = []
    for template in split_templates(split_seed).heldout:
        ask = {"role": "user", "content": template.text}
        info = {"lang": template.lang, "asks": template.asks, "question": template.text}
        out.append({"messages": [ask], "context": "alone", **info})
        item = _context_item(rng, kinds, template.lang, split_seed)
        out.append({"messages": [*_turn(item.question, item.answer), ask], "context": "after_skill", **info})
    return out


def _balanced_items(
    n: int, rng: random.Random, heldout: bool, split_seed: int, avoid: set[str] | None = None
) -> list[SkillItem]:
    """Sample ``n`` distinct skill items, cycling over every (kind, language) cell."""
    cells = [(kind, lang) for kind in SKILL_KINDS for lang in LANGS]
    seen = set(avoid or ())
    out: list[SkillItem] = []
    for i in range(n):
        kind, lang = cells[i % len(cells)]
        for _ in range(100):
            item = skill_item(rng, kind, lang, heldout=heldout, split_seed=split_seed)
            if item.question not in seen:
                break
        seen.add(item.question)
        out.append(item)
    return out


def skill_probes(n: int = 60, seed: int = 0, *, split_seed: int = SPLIT_SEED) -> list[SkillItem]:
    """Return ``n`` held-out skill probes (held-out arithmetic problems, held-out phrasings), balanced."""
    return _balanced_items(n, _rng("skill-probes", seed), True, split_seed)


def general_probes(n: int = 40, seed: int = 0, *, split_seed: int = SPLIT_SEED) -> list[dict[str, Any]]:
    """Return ``n`` in-distribution skill prompts with reference and key, for measuring retention."""
    items = _balanced_items(n, _rng("general-probes", seed), False, split_seed)
    return [
        {
            "messages": [{"role": "user", "content": item.question}],
            "reference": item.answer,
            "key": item.key,
            "kind": item.kind,
            "lang": item.lang,
        }
        for item in items
    ]


def conversation_text(conversation: Conversation) -> str:
    """Join a conversation's message contents with newlines (plain text, no chat template)."""
    return "\n".join(m["content"] for m in conversation)


def tokenizer_corpus(
    seed: int = 0,
    *,
    n_conversations: int = 3000,
    n_documents: int = 800,
    n_generic: int = 400,
    split_seed: int = SPLIT_SEED,
) -> list[str]:
    """Return texts to train the BPE tokenizer on; it holds no new-identity sentences.

    Base conversations, plain documents, generic bilingual sentences (where words like Nova, Acme and
    Lab appear as ordinary words), every identity question template and held-out skill questions.
    """
    texts = [conversation_text(c) for c in base_conversations(n_conversations, seed, split_seed=split_seed)]
    texts += plain_documents(n_documents, seed, split_seed=split_seed)
    texts += generic_sentences(n_generic, seed)
    texts += [t.text for t in QUESTION_TEMPLATES]
    texts += [item.question for item in skill_probes(80, seed, split_seed=split_seed)]
    return texts
