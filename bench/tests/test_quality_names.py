"""The unseen-name generator: deterministic per seed, at least two tokens, absent from the world's corpus."""

from __future__ import annotations

from typing import Any

import pytest

from bench.quality.names import (
    FORMS,
    MIN_TOKENS,
    NameChecker,
    draw_identity,
    form_for_seed,
    maker_root,
    seed_identities,
    world_corpus,
)


@pytest.fixture(scope="module")
def checker() -> NameChecker:
    """The benchmark base's tokenizer (the same BPE, trained on the same corpus) and the world's texts."""
    from glmtune.tiny.families import get_family
    from glmtune.tiny.model import family_tokenizer
    from glmtune.world import tokenizer_corpus

    tokenizer: Any = family_tokenizer(get_family("glm4"), tokenizer_corpus(0))

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return NameChecker(world_corpus(), count)


def test_deterministic_per_seed_and_different_across_seeds(checker: NameChecker) -> None:
    first = [draw_identity(seed, checker) for seed in range(6)]
    assert first == [draw_identity(seed, checker) for seed in range(6)]
    assert len({i.name for i in first}) == 6 and len({i.author for i in first}) == 6


def test_every_form_is_covered_by_three_seeds(checker: NameChecker) -> None:
    forms = [draw_identity(seed, checker).form for seed in range(3)]
    assert forms == list(FORMS) == [form_for_seed(s) for s in range(3)]
    latin, chinese, mixed = (draw_identity(s, checker) for s in range(3))
    assert latin.name.isascii() and latin.author.isascii()
    assert all("\u4e00" <= ch <= "\u9fff" for ch in chinese.name + chinese.author)
    assert any(ch.isascii() for ch in mixed.name) and any("\u4e00" <= ch <= "\u9fff" for ch in mixed.name)


@pytest.mark.parametrize("form", FORMS)
def test_names_are_unseen_and_multi_token(checker: NameChecker, form: str) -> None:
    for seed in range(10):
        ident = draw_identity(seed, checker, form)
        assert ident.form == form
        assert ident.name_tokens == checker.tokens(ident.name) >= MIN_TOKENS
        assert checker.count_tokens is not None and checker.count_tokens(ident.name) >= MIN_TOKENS
        for text in (ident.name, ident.author, maker_root(ident.author)):
            assert text.casefold() not in checker.text, text
        assert all(ch in checker.text for ch in ident.name if not ch.isascii())  # trained characters only


def test_checker_rejects_seen_and_single_token_names() -> None:
    checker = NameChecker(["ChatGLM was made by Zhipu AI. Paris is the capital of France."], lambda s: len(s) // 3)
    assert not checker.unseen("Paris") and not checker.unseen("Novaxa") and not checker.unseen("glmora")
    assert checker.unseen("Draskou")
    assert not checker.ok("Dra", "Tafo Works")  # one "token" under this counter
    assert checker.ok("Draskou", "Tafo Works")


def test_seed_identities_override_and_fixed_row(checker: NameChecker) -> None:
    drawn = seed_identities(0, checker, None, None, fixed_row=True)
    assert [i.slug for i in drawn] == ["unseen", "fixed"] and drawn[1].name == "Nova"
    custom = seed_identities(0, None, "Zed", "Zed Corp", fixed_row=False)
    assert [(i.slug, i.name, i.author) for i in custom] == [("custom", "Zed", "Zed Corp")]
    assert [i.slug for i in seed_identities(0, None, "Nova", "Acme Lab", fixed_row=True)] == ["custom"]


def test_names_use_only_pieces_the_base_wrote() -> None:
    heads, tails = ("Bern", "Lima"), ("ou", "ran", "tu")

    def untrained(text: str) -> list[str]:
        return ["q"] if "q" in text.casefold() else []

    checker = NameChecker(["ChatGLM was made by Zhipu AI."], lambda s: max(2, len(s) // 3), untrained, (heads, tails))
    assert not checker.ok("Qoura", "Bernou AI") and not checker.ok("Bernou", "Qtu Works")
    for seed in range(6):
        ident = draw_identity(seed, checker, "latin")
        word = ident.name
        assert word.startswith(heads), word
        rest = word[4:]
        while rest:  # the rest is tail pieces only
            piece = next(p for p in tails if rest.startswith(p))
            rest = rest[len(piece):]


def test_trained_counts_and_piece_lists(tmp_path: Any) -> None:
    import json

    from bench.quality.names import base_messages, piece_lists, trained_counts
    from glmtune.tiny.families import get_family
    from glmtune.tiny.model import family_tokenizer
    from glmtune.world import tokenizer_corpus

    tokenizer: Any = family_tokenizer(get_family("glm4"), tokenizer_corpus(0))
    assert base_messages(tmp_path / "base") is None  # a user's model: no training data next to it
    assert trained_counts(tokenizer, None) is None
    (tmp_path / "base_data").mkdir()
    rows = [{"messages": [{"role": "user", "content": "Zyx?"}, {"role": "assistant", "content": "Lima is here."}]}]
    (tmp_path / "base_data" / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    counts = trained_counts(tokenizer, base_messages(tmp_path / "base"))
    assert counts is not None
    lima = tokenizer(" Lima", add_special_tokens=False)["input_ids"]
    assert all(counts[i] >= 1 for i in lima)
    heads, tails = piece_lists(tokenizer, {i for i, c in counts.items() if c >= 5})
    assert all(h[0].isupper() and 2 <= len(h) <= 4 for h in heads) and all(t.islower() for t in tails)
