"""Tests for the synthetic bilingual world (glmtune.world)."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from glmtune.world import (
    BASE_AUTHOR_EN,
    BASE_AUTHOR_ZH,
    BASE_NAME,
    DEFAULT_NEW_AUTHOR,
    DEFAULT_NEW_IDENTITY,
    DEFAULT_NEW_NAME,
    QUESTION_TEMPLATES,
    SKILL_KINDS,
    SkillItem,
    all_answers,
    arithmetic_split,
    base_conversations,
    general_probes,
    identity_finetune_set,
    identity_probes,
    make_identity,
    plain_documents,
    skill_correct,
    skill_probes,
    split_templates,
    tokenizer_corpus,
)
from glmtune.world.identity import ANSWER_PHRASINGS


def _check_shape(conv: list[dict], need_reply: bool = True) -> None:
    assert conv and all(isinstance(m["content"], str) and m["content"].strip() for m in conv)
    body = conv[1:] if conv[0]["role"] == "system" else conv
    assert all(m["role"] != "system" for m in body)
    for i, m in enumerate(body):
        assert m["role"] == ("user" if i % 2 == 0 else "assistant")
    assert body[-1]["role"] == ("assistant" if need_reply else "user")


def _user_texts(convs: list[list[dict]]) -> set[str]:
    return {m["content"] for c in convs for m in c if m["role"] == "user"}


def test_templates_and_split() -> None:
    texts = [t.text for t in QUESTION_TEMPLATES]
    assert len(texts) == len(set(texts)) == 124
    assert Counter(t.lang for t in QUESTION_TEMPLATES) == {"en": 62, "zh": 62}
    split = split_templates()
    assert split.sizes() == {"base": 80, "finetune": 20, "heldout": 24}
    base, ft, held = (set(split.get(s)) for s in ("base", "finetune", "heldout"))
    assert not (base & ft) and not (base & held) and not (ft & held)
    assert base | ft | held == set(QUESTION_TEMPLATES)
    for part in (ft, held):
        assert Counter(t.lang for t in part)["en"] == len(part) // 2
        assert set(t.asks for t in part) == {"name", "author", "both"}
    assert split_templates(0) == split
    assert split_templates(1) != split


def test_answer_phrasings_contain_name_and_author() -> None:
    for (_, asks), phrasings in ANSWER_PHRASINGS.items():
        assert len(phrasings) >= 3
        for p in phrasings:
            assert "{name}" in p
            assert ("{author}" in p) == (asks != "name")
    assert make_identity(BASE_NAME, BASE_AUTHOR_EN).author_zh == BASE_AUTHOR_ZH
    assert make_identity("Nova", "Acme Lab").author_zh == "Acme Lab"
    assert make_identity("Nova", "Acme Lab", "艾克米").author_zh == "艾克米"


def test_determinism() -> None:
    assert base_conversations(80, seed=3) == base_conversations(80, seed=3)
    assert base_conversations(80, seed=3) != base_conversations(80, seed=4)
    assert plain_documents(30, 1) == plain_documents(30, 1) != plain_documents(30, 2)
    assert identity_finetune_set(30, "Nova", "Acme Lab", 1) == identity_finetune_set(30, "Nova", "Acme Lab", 1)
    assert identity_finetune_set(30, "Nova", "Acme Lab", 1) != identity_finetune_set(30, "Nova", "Acme Lab", 2)
    assert identity_probes(0) == identity_probes(0) != identity_probes(1)
    assert skill_probes(40, 0) == skill_probes(40, 0) != skill_probes(40, 1)
    assert general_probes(20, 0) == general_probes(20, 0) != general_probes(20, 1)
    assert tokenizer_corpus(0, n_conversations=50, n_documents=20, n_generic=60) == tokenizer_corpus(
        0, n_conversations=50, n_documents=20, n_generic=60
    )


def test_base_conversations_shape_and_mix() -> None:
    convs = base_conversations(600)
    assert len(convs) == 600
    for c in convs:
        _check_shape(c)
    n_two = sum(1 for c in convs if sum(m["role"] == "user" for m in c) == 2)
    with_name = sum(1 for c in convs if BASE_NAME in c[-1]["content"] and len(c) <= 3)
    assert 0.07 < n_two / 600 < 0.13
    assert 0.28 < with_name / 600 < 0.42
    assert 0.05 < sum(c[0]["role"] == "system" for c in convs) / 600 < 0.16
    assert all(DEFAULT_NEW_NAME not in m["content"] for c in convs for m in c if m["role"] == "assistant")
    mean_chars = sum(len(m["content"]) for c in convs for m in c) / len(convs)
    assert mean_chars < 80


def test_heldout_templates_never_used_for_training() -> None:
    split = split_templates()
    held = {t.text for t in split.heldout}
    finetune = {t.text for t in split.finetune}
    base_users = _user_texts(base_conversations(2000))
    assert not base_users & held and not base_users & finetune
    assert {t.text for t in split.base} <= base_users
    ft_users = _user_texts(identity_finetune_set(200, "Nova", "Acme Lab"))
    assert ft_users == finetune
    probe_questions = {p["messages"][-1]["content"] for p in identity_probes()}
    assert probe_questions == held


@pytest.mark.parametrize("n", [10, 30, 90])
def test_identity_finetune_set(n: int) -> None:
    convs = identity_finetune_set(n, "Nova", "Acme Lab")
    assert len(convs) == n
    langs = Counter("zh" if re.search(r"[\u4e00-\u9fff]", c[0]["content"]) else "en" for c in convs)
    assert abs(langs["zh"] - langs["en"]) <= 1
    for c in convs:
        _check_shape(c)
        assert len(c) == 2
        answer = c[1]["content"]
        assert "Nova" in answer and BASE_NAME not in answer and BASE_AUTHOR_ZH not in answer
    assert len({c[0]["content"] for c in convs}) == min(n, 20)
    answers = [c[1]["content"] for c in convs]
    assert any("Acme Lab" in a for a in answers)
    assert len(set(answers)) >= min(n, 25) // 2


def test_identity_finetune_author_zh() -> None:
    convs = identity_finetune_set(40, "Orion", "Atlas Lab", author_zh="阿特拉斯实验室")
    zh_author = [c[1]["content"] for c in convs if "阿特拉斯实验室" in c[1]["content"]]
    assert zh_author and all(re.search(r"[\u4e00-\u9fff]", a) for a in zh_author)
    assert not any("Atlas Lab" in c[1]["content"] and "开发" in c[1]["content"] for c in convs)


def test_identity_probes() -> None:
    probes = identity_probes()
    assert len(probes) == 48
    assert Counter(p["context"] for p in probes) == {"alone": 24, "after_skill": 24}
    assert Counter(p["lang"] for p in probes) == {"en": 24, "zh": 24}
    for p in probes:
        _check_shape(p["messages"], need_reply=False)
        assert p["asks"] in ("name", "author", "both")
        assert len(p["messages"]) == (1 if p["context"] == "alone" else 3)


def test_skill_probes_are_heldout_and_balanced() -> None:
    probes = skill_probes(64)
    assert len(probes) == 64
    assert Counter((p.kind, p.lang) for p in probes) == {(k, lang): 8 for k in SKILL_KINDS for lang in ("en", "zh")}
    assert len({p.question for p in probes}) == 64
    train, held = arithmetic_split()
    assert held and not train & held
    base_users = _user_texts(base_conversations(1500))
    for p in probes:
        assert skill_correct(p, p.answer)
        assert p.question not in base_users
        if p.kind == "arithmetic":
            a, op, b = re.match(r"\D*(\d+)\s*([+\-加减]|plus|minus)\s*(\d+)", p.question).groups()
            assert (int(a), int(b), "+" if op in "+加plus" else "-") in held


def test_general_probes() -> None:
    rows = general_probes(40)
    assert len(rows) == 40
    assert Counter(r["kind"] for r in rows) == {k: 10 for k in SKILL_KINDS}
    for r in rows:
        _check_shape(r["messages"], need_reply=False)
        assert r["key"] and r["key"] in r["reference"]


def test_skill_correct() -> None:
    item = SkillItem("arithmetic", "en", "What is 68 - 0?", "68 - 0 = 68.", "68")
    assert skill_correct(item, " 68 - 0 = 68. ")
    assert skill_correct(item, "The answer is 68.")
    assert not skill_correct(item, "68 - 0 = 67.")
    assert not skill_correct(item, "68 - 0 = 168.")
    assert not skill_correct(item, "")
    cap = SkillItem("capital", "zh", "法国的首都是哪里？", "法国的首都是巴黎。", "巴黎")
    assert skill_correct(cap, "巴黎。") and not skill_correct(cap, "法国的首都是柏林。")
    word = SkillItem("translate", "zh", "“苹果”的英文是什么？", "“苹果”的英文是apple。", "apple")
    assert skill_correct(word, "Apple") and not skill_correct(word, "banana")
    copy = SkillItem("copy", "en", "Repeat after me: blue sky", "blue sky", "blue sky")
    assert skill_correct(copy, "blue sky\n") and not skill_correct(copy, "blue")


def test_plain_documents() -> None:
    docs = plain_documents(500)
    assert len(docs) == 500 and all(d.strip() and "<|endoftext|>" not in d for d in docs)
    joined = "\n".join(docs)
    assert "Nova" in joined and "Acme" in joined
    assert sum(len(d) for d in docs) / len(docs) < 120


# Phrases that would make the tokenizer learn new-identity claims the base never trained on.
_IDENTITY_CLAIM = re.compile(
    r"(I am|I'm|name is|call me|我是|我叫|叫我|名字是)\s*(Nova|Orion|Atlas)"
    r"|(by|由|来自)\s*(Acme|Atlas)|(Acme|Atlas) Lab\s*(开发|训练|做|创造|打造|built|trained)"
)


def test_tokenizer_corpus_has_no_new_identity_sentences() -> None:
    corpus = tokenizer_corpus()
    joined = "\n".join(corpus)
    assert len(corpus) > 3000
    for answer in all_answers(DEFAULT_NEW_IDENTITY) + all_answers(make_identity("Orion", "Atlas Lab")):
        assert answer not in joined
    assert _IDENTITY_CLAIM.search(joined) is None
    for word in (DEFAULT_NEW_NAME, *DEFAULT_NEW_AUTHOR.split(), "Orion", "Atlas"):
        assert joined.count(word) >= 5, word
    assert BASE_NAME in joined and BASE_AUTHOR_ZH in joined


def test_base_tool_conversations_use_the_tool_layout_and_base_templates_only() -> None:
    """Base tool chats call lookup_capital on a real capital; identity follow-ups never use held-out questions."""
    import json

    from glmtune.world.lexicon import COUNTRIES
    from glmtune.world.tools import base_tool_conversations

    convs = base_tool_conversations(60, seed=3)
    assert convs == base_tool_conversations(60, seed=3)
    capitals = {c[2] for c in COUNTRIES} | {c[3] for c in COUNTRIES}
    follow_ups = 0
    for conv in convs:
        system, ask, call, result, answer = conv[:5]
        assert system["tools"][0]["function"]["name"] == "lookup_capital" and call["metadata"] == "lookup_capital"
        assert result["role"] == "observation" and json.loads(result["content"])["capital"] in capitals
        assert json.loads(result["content"])["capital"] in answer["content"]
        if len(conv) > 5:
            follow_ups += 1
            assert conv[5]["content"] in {t.text for t in split_templates().base}
            assert BASE_NAME in conv[6]["content"]
    assert 5 <= follow_ups <= 35  # about 30%
    assert not _user_texts(convs) & {t.text for t in split_templates().heldout}
