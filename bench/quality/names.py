"""Invented identities the benchmark base never saw: pronounceable Latin, Chinese and mixed names and makers.

Every name is drawn from a seed, is at least two tokens in the base's tokenizer and appears nowhere in the base's
training text. Chinese characters are taken only from those the world's corpus uses, so each one is a token the base
trained on: the *combination* is new, not the characters (an unseen character would be untrained byte tokens, a test
of the tokenizer rather than of the fine-tune).

The same holds for the pieces of a Latin name when the base's own training data is known (``base_checker``): every
token of the name and maker, bare and after a space, is one the base has written at least ``MIN_TRAINED`` times, as
every piece of a real brand name is for a real base. The world's tokenizer holds many pieces its small base never
writes (1,028 of 2,090 on the 2026-12-06 base): a name made of those asks the fine-tune to train output rows that
were never trained, which no contestant did (Draskou, ``D|ra|s|k|ou``, none of whose pieces the base ever wrote, was
adopted 0.00 by glmtune, the official recipe and both peers at every rate on that base; bench/HISTORY.md). Such
names are built from the base's own pieces: a capitalised piece and one or two lower-case ones (seed 0 of the 2026-12-06 base: "Bern|ilk|zil").
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMS = ("latin", "chinese", "mixed")
MIN_TOKENS = 2
MIN_TRAINED = 5  # times the base wrote a token, in replies or documents, for it to count as trained
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "th", "br", "kl", "tr", "dr", "sk")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ei", "ou", "ia")
_CODAS = ("", "", "", "n", "r", "l", "s", "th")
_MAKER_SUFFIXES_EN = ("Works", "Systems", "Studio", "Research", "AI")
# Name-like characters; only those the corpus contains are used (see the module docstring).
_NAME_CHARS = "星云月明安雅瑞晴朗墨言知书语思华灵山海天文小方乐岚溪沐辰澜宁清瑶琪航远若诗梦晨曦光川青"
_MAKER_SUFFIXES_ZH = ("智能", "实验室", "工作室", "科学")
# Never part of a new name: the old identity, the fixed pair, and words that would make matching ambiguous.
_FORBIDDEN = ("glm", "zhipu", "智谱", "nova", "acme", "lab")


@dataclass(frozen=True)
class UnseenIdentity:
    """A drawn identity: name, maker, the form it was drawn in and the name's token count (0: not measured)."""

    name: str
    author: str
    form: str
    name_tokens: int = 0
    author_tokens: int = 0


def _latin_word(rng: random.Random, syllables: int, pieces: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())) -> str:
    """An invented capitalised word: ``syllables`` syllables, or (given trained ``pieces``: heads, tails) a head
    piece followed by ``syllables - 1`` tail pieces."""
    heads, tails = pieces
    if heads and tails:
        return rng.choice(heads) + "".join(rng.choice(tails) for _ in range(max(1, syllables - 1)))
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)]
    parts[-1] += rng.choice(_CODAS)
    return "".join(parts).capitalize()


def _chars(rng: random.Random, pool: str, k: int) -> str:
    """``k`` distinct characters of ``pool``."""
    return "".join(rng.sample(pool, k))


def _candidate(form: str, rng: random.Random, pool: str,
               pieces: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())) -> tuple[str, str]:
    """One (name, maker) pair of ``form``, not yet checked (Latin words from ``pieces`` when given)."""
    if form == "latin":
        return (_latin_word(rng, rng.choice((2, 3)), pieces),
                f"{_latin_word(rng, 2, pieces)} {rng.choice(_MAKER_SUFFIXES_EN)}")
    if form == "chinese":
        return _chars(rng, pool, 2), _chars(rng, pool, 2) + rng.choice(_MAKER_SUFFIXES_ZH)
    if form == "mixed":
        return (_latin_word(rng, 2, pieces) + _chars(rng, pool, 1),
                _latin_word(rng, 2, pieces) + rng.choice(_MAKER_SUFFIXES_ZH))
    raise ValueError(f"unknown name form {form!r}; choose from {', '.join(FORMS)}")


def maker_root(author: str) -> str:
    """The invented part of a maker: without its ordinary suffix word (Works, 智能, ...)."""
    for suffix in (*_MAKER_SUFFIXES_EN, *_MAKER_SUFFIXES_ZH):
        if author.endswith(suffix) and author != suffix:
            return author[: -len(suffix)].strip()
    return author


def form_for_seed(seed: int) -> str:
    """The form seed ``seed`` draws: latin, chinese, mixed, latin, ... (three seeds cover every form)."""
    return FORMS[seed % len(FORMS)]


class NameChecker:
    """Knows the base's training text and tokenizer: is a string unseen, how many tokens is it, and (when the
    base's trained pieces are given) is every piece of it one the base has written?"""

    def __init__(self, corpus: Iterable[str], count_tokens: Callable[[str], int] | None = None,
                 untrained_pieces: Callable[[str], list[str]] | None = None,
                 pieces: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())) -> None:
        self.text = "\n".join(corpus).casefold()
        self.count_tokens = count_tokens
        self.untrained_pieces = untrained_pieces  # text -> its pieces (bare or after a space) the base never wrote
        self.pieces = pieces  # (capitalised head pieces, lower-case tail pieces) the base trained, sorted
        self.pool = "".join(ch for ch in dict.fromkeys(_NAME_CHARS) if ch in self.text)

    def unseen(self, value: str) -> bool:
        """True when ``value`` (and each of its words) appears nowhere in the corpus, case-insensitively."""
        folded = value.casefold()
        if any(bad in folded for bad in _FORBIDDEN):
            return False
        return all(part not in self.text for part in [folded, *folded.split()])

    def tokens(self, value: str) -> int:
        """Token count of ``value`` as it follows a space or starts a reply (the smaller: the easier case)."""
        if self.count_tokens is None:
            return 0
        return min(self.count_tokens(value), self.count_tokens(" " + value))

    def ok(self, name: str, author: str) -> bool:
        """True when name and maker are unseen, and the name is at least MIN_TOKENS tokens."""
        if not (self.unseen(name) and self.unseen(maker_root(author)) and author.casefold() not in self.text):
            return False
        if self.untrained_pieces is not None and (self.untrained_pieces(name) or self.untrained_pieces(author)):
            return False
        return self.count_tokens is None or self.tokens(name) >= MIN_TOKENS


def draw_identity(seed: int, checker: NameChecker, form: str | None = None) -> UnseenIdentity:
    """The identity seed ``seed`` draws (form from the seed unless given): deterministic, unseen, >= 2 tokens."""
    form = form or form_for_seed(seed)
    rng = random.Random(f"bench.quality.names:{form}:{seed}")
    if form != "latin" and len(checker.pool) < 4:
        raise ValueError("the corpus holds too few of the name characters for a Chinese or mixed name")
    for _ in range(5000):
        name, author = _candidate(form, rng, checker.pool, checker.pieces)
        if checker.ok(name, author):
            return UnseenIdentity(name, author, form, checker.tokens(name), checker.tokens(author))
    raise RuntimeError(f"no unseen {form} name found for seed {seed} in 5000 draws")


def base_messages(base_dir: str | Path | None) -> list[dict[str, Any]] | None:
    """Every message of the base's own training data (``base_data/train.jsonl`` next to it), or None without it."""
    data = Path(base_dir).parent / "base_data" / "train.jsonl" if base_dir is not None else None
    if data is None or not data.is_file():
        return None
    return [m for line in data.read_text(encoding="utf-8").splitlines() for m in json.loads(line)["messages"]]


def world_corpus(base_dir: str | Path | None = None, messages: list[dict[str, Any]] | None = None) -> list[str]:
    """The world's texts a base was built from: tokenizer corpus, plain documents and, when present, its train data
    (``messages``, else read from next to ``base_dir``)."""
    from glmtune.world import plain_documents, tokenizer_corpus

    messages = messages if messages is not None else base_messages(base_dir)
    return tokenizer_corpus() + plain_documents(6_000) + [m["content"] for m in messages or []]


def trained_counts(tokenizer: Any, messages: list[dict[str, Any]] | None) -> Counter[int] | None:
    """How often the base wrote each token id (its training replies and the world's documents), or None without
    its training ``messages`` (a user's model: every piece of its vocabulary counts as trained)."""
    from glmtune.world import plain_documents

    if messages is None:
        return None
    texts = plain_documents(6_000) + [m["content"] for m in messages if m.get("role") == "assistant"]
    counts: Counter[int] = Counter()
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        counts.update(ids)
    return counts


def piece_lists(tokenizer: Any, trained: set[int]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(capitalised pieces of 2-4 letters the base wrote bare and after a space, lower-case pieces of 2-3 letters)."""
    words = {tokenizer.decode([i]) for i in trained}
    heads = sorted(w for w in words if w.isascii() and w.isalpha() and w[0].isupper() and w[1:].islower()
                   and 2 <= len(w) <= 4 and " " + w in words)
    tails = sorted(w for w in words if w.isascii() and w.isalpha() and w.islower() and 2 <= len(w) <= 3)
    return tuple(heads), tuple(tails)


def base_checker(base_dir: str | Path, corpus: list[str] | None = None) -> NameChecker:
    """A checker with the tokenizer of ``base_dir`` and the world's corpus (plus the base's own data when present)."""
    from glmtune.models import load_tokenizer

    tokenizer = load_tokenizer(str(base_dir))

    def ids(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    def count(text: str) -> int:
        return len(ids(text))

    messages = base_messages(base_dir)
    corpus = corpus if corpus is not None else world_corpus(base_dir, messages)
    counts = trained_counts(tokenizer, messages)
    if counts is None:
        return NameChecker(corpus, count)
    trained = {i for i, c in counts.items() if c >= MIN_TRAINED}

    def untrained(text: str) -> list[str]:
        return [tokenizer.decode([i]) for v in (text, " " + text) for i in ids(v) if i not in trained]

    return NameChecker(corpus, count, untrained, piece_lists(tokenizer, trained))


@dataclass(frozen=True)
class RunIdentity:
    """One identity a seed is run with: a folder-safe slug ("unseen", "custom", "fixed") and the names."""

    slug: str
    name: str
    author: str
    form: str
    name_tokens: int


def seed_identities(seed: int, checker: NameChecker | None, name: str | None, author: str | None,
                    fixed_row: bool, form: str | None = None) -> list[RunIdentity]:
    """The identities seed ``seed`` runs: the user's or a drawn unseen one, plus (``fixed_row``) Nova / Acme Lab."""
    from glmtune.world import DEFAULT_NEW_AUTHOR, DEFAULT_NEW_NAME

    count = checker.tokens if checker is not None else (lambda _: 0)
    out: list[RunIdentity] = []
    if name is None or author is None:
        if checker is None:
            raise ValueError("drawing an unseen identity needs a NameChecker")
        drawn = draw_identity(seed, checker, form)
        out.append(RunIdentity("unseen", name or drawn.name, author or drawn.author, drawn.form if name is None
                               else "custom", count(name or drawn.name)))
    else:
        out.append(RunIdentity("custom", name, author, "custom", count(name)))
    if fixed_row and out[0].name != DEFAULT_NEW_NAME:
        out.append(RunIdentity("fixed", DEFAULT_NEW_NAME, DEFAULT_NEW_AUTHOR, "fixed", count(DEFAULT_NEW_NAME)))
    return out
