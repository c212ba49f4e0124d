"""Skills with exactly checkable answers: arithmetic, capitals, word translation and copying."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache

from glmtune.world.lexicon import COLOURS, COUNTRIES, NOUNS, WORDS

SKILL_KINDS = ("arithmetic", "capital", "translate", "copy")
ARITH_MAX = 99
ARITH_HELDOUT_FRACTION = 0.1


@dataclass(frozen=True)
class SkillItem:
    """One skill question with its full reference reply and the short key a correct reply must contain."""

    kind: str
    lang: str
    question: str
    answer: str
    key: str


# Phrasings: (train phrasings, held-out phrasings). Held-out phrasings only ever appear in probes.
_ARITH_Q = {
    "en": (("What is {a} {sym} {b}?", "What is {a} {word} {b}?", "Calculate {a} {sym} {b}.",
            "How much is {a} {word} {b}?", "Please compute {a} {sym} {b}."), ("{a} {sym} {b} = ?",)),
    "zh": (("{a}{zw}{b}等于多少？", "{a}{sym}{b}等于几？", "计算{a}{sym}{b}。", "请算一下{a}{zw}{b}。",
            "{a}{zw}{b}是多少？"), ("{a}{sym}{b}=？",)),
}
_ARITH_A = {
    "en": ("{a} {sym} {b} = {c}.", "{a} {word} {b} equals {c}.", "The answer is {c}."),
    "zh": ("{a}{zw}{b}等于{c}。", "{a}{sym}{b}={c}。", "答案是{c}。"),
}
_OPS = {"+": ("plus", "加"), "-": ("minus", "减")}

_CAPITAL_Q = {
    "en": (("What is the capital of {c}?", "What's the capital city of {c}?", "Which city is the capital of {c}?",
            "Name the capital of {c}.", "Tell me the capital of {c}."), ("Do you know the capital of {c}?",)),
    "zh": (("{c}的首都是哪里？", "{c}的首都是什么？", "哪个城市是{c}的首都？", "请问{c}的首都是哪座城市？",
            "告诉我{c}的首都。"), ("你知道{c}的首都吗？",)),
}
_CAPITAL_A = {
    "en": ("The capital of {c} is {k}.", "{k} is the capital of {c}."),
    "zh": ("{c}的首都是{k}。", "{k}是{c}的首都。"),
}

# Translation directions: "to_zh" asks for the Chinese of an English word, "to_en" the reverse.
_TRANSLATE_Q = {
    ("en", "to_zh"): (("Translate '{w}' into Chinese.", "What is '{w}' in Chinese?",
                       "How do you say '{w}' in Chinese?", "What is the Chinese word for '{w}'?"),
                      ("Give me the Chinese for '{w}'.",)),
    ("en", "to_en"): (("Translate '{z}' into English.", "What is '{z}' in English?",
                       "What does '{z}' mean in English?", "How do you say '{z}' in English?"),
                      ("Give me the English for '{z}'.",)),
    ("zh", "to_zh"): (("把“{w}”翻译成中文。", "“{w}”用中文怎么说？", "“{w}”的中文是什么？", "{w}是什么意思？"),
                      ("请把{w}译成中文。",)),
    ("zh", "to_en"): (("把“{z}”翻译成英文。", "“{z}”用英文怎么说？", "“{z}”的英文是什么？", "{z}的英文单词是什么？"),
                      ("请把{z}译成英文。",)),
}
_TRANSLATE_A = {
    ("en", "to_zh"): ("'{w}' in Chinese is {z}.", "The Chinese word for '{w}' is {z}."),
    ("en", "to_en"): ("'{z}' in English is {w}.", "'{z}' means {w}."),
    ("zh", "to_zh"): ("“{w}”的中文是{z}。", "{w}的意思是{z}。"),
    ("zh", "to_en"): ("“{z}”的英文是{w}。", "{z}用英文说是{w}。"),
}

_COPY_Q = {
    "en": (("Repeat after me: {p}", "Please repeat: {p}", "Say this back to me: {p}", "Copy this text: {p}"),
           ("Echo the following: {p}",)),
    "zh": (("跟我说：{p}", "请重复：{p}", "复述这句话：{p}", "照着写一遍：{p}"), ("原样输出：{p}",)),
}


@lru_cache(maxsize=8)
def arithmetic_split(seed: int = 0) -> tuple[frozenset[tuple[int, int, str]], frozenset[tuple[int, int, str]]]:
    """Return (train, heldout) sets of (a, b, op) problems over 0..99 (no negative results); pure in ``seed``."""
    problems = [(a, b, "+") for a in range(ARITH_MAX + 1) for b in range(ARITH_MAX + 1)]
    problems += [(a, b, "-") for a in range(ARITH_MAX + 1) for b in range(a + 1)]
    random.Random(f"glmtune.world.arith-split:{seed}").shuffle(problems)
    cut = int(len(problems) * ARITH_HELDOUT_FRACTION)
    return frozenset(problems[cut:]), frozenset(problems[:cut])


@lru_cache(maxsize=16)
def arithmetic_problems(seed: int = 0, heldout: bool = False) -> tuple[tuple[int, int, str], ...]:
    """Return the train (or held-out) (a, b, op) problems of ``arithmetic_split(seed)`` in a fixed order."""
    train, held = arithmetic_split(seed)
    return tuple(sorted(held if heldout else train, key=lambda p: (p[2], p[0], p[1])))


def _phrasing(table: tuple[tuple[str, ...], tuple[str, ...]], heldout: bool, rng: random.Random) -> str:
    return rng.choice(table[1] if heldout else table[0])


def arithmetic_item(
    rng: random.Random, lang: str, heldout: bool = False, split_seed: int = 0, heldout_phrasing: bool = False
) -> SkillItem:
    """Sample an addition/subtraction item from the train (or held-out) problems of ``split_seed``."""
    a, b, op = rng.choice(arithmetic_problems(split_seed, heldout))
    return arithmetic_for(a, b, op, lang, rng, heldout_phrasing)


def arithmetic_for(
    a: int, b: int, op: str, lang: str, rng: random.Random, heldout_phrasing: bool = False
) -> SkillItem:
    """Build the arithmetic item for ``a op b`` with a randomly chosen phrasing."""
    c = a + b if op == "+" else a - b
    word, zw = _OPS[op]
    fields = {"a": a, "b": b, "c": c, "sym": op, "word": word, "zw": zw}
    question = _phrasing(_ARITH_Q[lang], heldout_phrasing, rng).format(**fields)
    answer = rng.choice(_ARITH_A[lang]).format(**fields)
    return SkillItem("arithmetic", lang, question, answer, str(c))


def capital_item(rng: random.Random, lang: str, heldout_phrasing: bool = False) -> SkillItem:
    """Sample a capital-city question about one of the known countries."""
    country_en, country_zh, cap_en, cap_zh = rng.choice(COUNTRIES)
    country, cap = (country_zh, cap_zh) if lang == "zh" else (country_en, cap_en)
    question = _phrasing(_CAPITAL_Q[lang], heldout_phrasing, rng).format(c=country)
    answer = rng.choice(_CAPITAL_A[lang]).format(c=country, k=cap)
    return SkillItem("capital", lang, question, answer, cap)


def translate_item(rng: random.Random, lang: str, heldout_phrasing: bool = False) -> SkillItem:
    """Sample a word-translation question (English to Chinese or Chinese to English)."""
    en, zh, _ = rng.choice(WORDS)
    direction = rng.choice(("to_zh", "to_en"))
    question = _phrasing(_TRANSLATE_Q[(lang, direction)], heldout_phrasing, rng).format(w=en, z=zh)
    answer = rng.choice(_TRANSLATE_A[(lang, direction)]).format(w=en, z=zh)
    return SkillItem("translate", lang, question, answer, zh if direction == "to_zh" else en)


def copy_phrase(rng: random.Random, lang: str) -> str:
    """Make a short random phrase to be repeated verbatim."""
    style = rng.randrange(4)
    if style == 0:
        colour, noun = rng.choice(COLOURS), rng.choice(NOUNS)
        return f"{colour[1]}的{noun[1]}" if lang == "zh" else f"{colour[0]} {noun[0]}"
    if style == 1:
        n1, n2 = rng.sample(NOUNS, 2)
        return f"{n1[1]}和{n2[1]}" if lang == "zh" else f"{n1[0]} and {n2[0]}"
    if style == 2:
        return " ".join(str(rng.randrange(10)) for _ in range(rng.randint(3, 5)))
    nouns = rng.sample(NOUNS, 3)
    return "，".join(n[1] for n in nouns) if lang == "zh" else ", ".join(n[0] for n in nouns)


def copy_item(rng: random.Random, lang: str, heldout_phrasing: bool = False) -> SkillItem:
    """Sample a repeat-after-me item whose answer is the phrase itself."""
    phrase = copy_phrase(rng, lang)
    question = _phrasing(_COPY_Q[lang], heldout_phrasing, rng).format(p=phrase)
    return SkillItem("copy", lang, question, phrase, phrase)


def skill_item(
    rng: random.Random, kind: str, lang: str, heldout: bool = False, split_seed: int = 0
) -> SkillItem:
    """Sample one item of ``kind``; ``heldout`` uses held-out arithmetic problems and held-out phrasings.

    Held-out arithmetic keeps the training phrasings (the problem itself is new); the knowledge
    skills (capitals, words) and copying use phrasings never seen in training.
    """
    if kind == "arithmetic":
        return arithmetic_item(rng, lang, heldout=heldout, split_seed=split_seed)
    if kind == "capital":
        return capital_item(rng, lang, heldout)
    if kind == "translate":
        return translate_item(rng, lang, heldout)
    if kind == "copy":
        return copy_item(rng, lang, heldout)
    raise ValueError(f"unknown skill kind {kind!r}; expected one of {', '.join(SKILL_KINDS)}")


_TAIL_MARKER = re.compile(r"=|等于|是|\bequals\b|\bis\b")


def skill_correct(item: SkillItem, prediction: str) -> bool:
    """Return True when ``prediction`` contains the item's key.

    Latin keys match case-insensitively. Arithmetic keys must stand alone as a number (``68`` does not
    match ``168``) in the text after the last ``=``/``等于``/``equals``/``is``/``是`` when there is one,
    so echoing the question's operands does not count.
    """
    pred = prediction.strip()
    key = item.key.strip()
    if not key:
        return False
    if item.kind == "arithmetic":
        marks = list(_TAIL_MARKER.finditer(pred))
        tail = pred[marks[-1].end() :] if marks else pred
        return re.search(rf"(?<![\d-]){re.escape(key)}(?!\d)", tail) is not None
    if key.isascii():
        return key.lower() in pred.lower()
    return key in pred
