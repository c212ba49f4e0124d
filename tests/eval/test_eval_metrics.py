"""Hand-made cases with known answers for glmtune.eval (text metrics, identity, degeneration)."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import pytest

from glmtune.errors import DataError
from glmtune.eval import (
    degeneration_metrics,
    distinct_n,
    find_loop,
    finish_reason_share,
    has_loop,
    identity_scores,
    length_stats,
    load_probes,
    loop_rate,
    score_pair,
    segment,
    text_metrics,
    units,
)

# rouge_chinese's F1 adds 1e-8 to the denominator, so a perfect match is 99.9999995, not 100.
ROUGE_EPS = 1e-5
SENTENCE = "今天天气很好，我们一起去公园散步吧。"


# ---------------------------------------------------------------- text metrics


def test_identical_strings_score_full_marks() -> None:
    assert len(segment(SENTENCE)) >= 4  # BLEU-4 needs 4-grams to reach 1.0
    scores = score_pair(SENTENCE, "  " + SENTENCE + "\n")  # both sides are stripped
    for key in ("rouge-1", "rouge-2", "rouge-l"):
        assert scores[key] == pytest.approx(100.0, abs=ROUGE_EPS)
    assert scores["bleu-4"] == pytest.approx(1.0, abs=1e-12)


def test_disjoint_strings_score_zero() -> None:
    assert segment("苹果香蕉") == ["苹果", "香蕉"]
    assert segment("汽车飞机") == ["汽车", "飞机"]
    assert score_pair("苹果香蕉", "汽车飞机") == {
        "rouge-1": 0.0,
        "rouge-2": 0.0,
        "rouge-l": 0.0,
        "bleu-4": 0.0,
    }


def test_partial_overlap_matches_hand_computation() -> None:
    # jieba: ["我", "是"] vs ["我", "是", "一个"].
    assert segment("我是") == ["我", "是"]
    assert segment("我是一个") == ["我", "是", "一个"]
    scores = score_pair("我是", "我是一个")
    # ROUGE-1: P = 2/2, R = 2/3 -> F = 0.8; ROUGE-2: P = 1/1, R = 1/2 -> F = 2/3; LCS = 2 -> same as ROUGE-1.
    assert scores["rouge-1"] == pytest.approx(80.0, abs=ROUGE_EPS)
    assert scores["rouge-2"] == pytest.approx(200 / 3, abs=ROUGE_EPS)
    assert scores["rouge-l"] == pytest.approx(80.0, abs=ROUGE_EPS)
    # BLEU, method3: p1 = p2 = 1; no 3-/4-grams in the hypothesis -> 1/2 and 1/4; BP = exp(1 - 3/2).
    expected_bleu = (1 * 1 * 0.5 * 0.25) ** 0.25 * math.exp(1 - 3 / 2)
    assert scores["bleu-4"] == pytest.approx(expected_bleu, abs=1e-12)


@pytest.mark.parametrize(
    ("prediction", "reference"),
    [("", SENTENCE), ("   \n\t", SENTENCE), (SENTENCE, ""), (SENTENCE, " \u3000 "), ("", "")],
)
def test_empty_side_scores_zero_without_exception(prediction: str, reference: str) -> None:
    assert score_pair(prediction, reference) == dict.fromkeys(
        ("rouge-1", "rouge-2", "rouge-l", "bleu-4"), 0.0
    )


def test_text_metrics_averages_and_counts() -> None:
    result = text_metrics([SENTENCE, "苹果香蕉", ""], [SENTENCE, "汽车飞机", "有参考"])
    assert result["n"] == 3
    assert result["n_empty"] == 1
    assert result["n_error"] == 0
    assert result["rouge-1"] == pytest.approx(100.0 / 3, abs=ROUGE_EPS)
    assert result["rouge-l"] == pytest.approx(100.0 / 3, abs=ROUGE_EPS)
    assert result["bleu-4"] == pytest.approx(1.0 / 3, abs=1e-12)


def test_text_metrics_punctuation_only_does_not_crash() -> None:
    result = text_metrics(["。。。", "!!!", "……"], ["你好", "...", "……"])
    assert result["n"] == 3
    assert result["rouge-1"] >= 0.0


def test_scorer_exception_scores_zero_and_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    # The package re-exports the function text_metrics under the submodule's name; fetch the module itself.
    tm = importlib.import_module("glmtune.eval.text_metrics")

    class BrokenRouge:
        def get_scores(self, hyp: str, ref: str) -> list:
            raise ValueError("degenerate")

    backend = tm._load_backend()
    monkeypatch.setitem(backend, "rouge", BrokenRouge)
    result = text_metrics([SENTENCE, ""], [SENTENCE, SENTENCE])
    assert (result["n"], result["n_empty"], result["n_error"]) == (2, 1, 1)
    assert result["rouge-1"] == 0.0
    assert result["bleu-4"] == 0.0


def test_text_metrics_empty_input_and_length_mismatch() -> None:
    assert text_metrics([], []) == {
        "rouge-1": 0.0,
        "rouge-2": 0.0,
        "rouge-l": 0.0,
        "bleu-4": 0.0,
        "n": 0,
        "n_empty": 0,
        "n_error": 0,
    }
    with pytest.raises(ValueError):
        text_metrics(["a"], [])


# ---------------------------------------------------------------- identity

ANSWERS = [
    "I am Nova, made by Acme.",  # adopts, clean
    "我是Nova，由Acme开发。",  # adopts, clean
    "I am ChatGLM, developed by Zhipu AI.",  # does not adopt, leaks
    "我是一个AI助手。",  # does not adopt, clean
    "I'm nova, not ChatGLM.",  # adopts (case-insensitive), leaks
    "我是Nova，由智谱开发。",  # adopts, leaks old author
]


def test_identity_adoption_and_leakage_fractions() -> None:
    result = identity_scores(ANSWERS, "Nova", "Acme")
    assert result["n"] == 6
    assert result["adoption"] == pytest.approx(4 / 6)
    assert result["leakage"] == pytest.approx(3 / 6)
    assert result["author_adoption"] == pytest.approx(2 / 6)
    assert [o["index"] for o in result["offending"]] == [2, 3, 4, 5]
    assert result["offending"][1] == {"index": 3, "answer": ANSWERS[3], "why": "does not mention 'Nova'"}
    assert "智谱" in result["offending"][3]["why"]


def test_identity_new_name_containing_old_name_is_not_leakage() -> None:
    answers = [
        "I am GLM-Helper.",
        "I am glm-helper, formerly GLM.",
        "我是GLM-Helper，由智谱开发。",
        "I am GLM.",
    ]
    result = identity_scores(answers, "GLM-Helper", None)
    assert result["adoption"] == pytest.approx(3 / 4)
    assert result["leakage"] == pytest.approx(3 / 4)  # answers 1, 2 and 3; answer 0 only names the new name
    assert [o["index"] for o in result["offending"]] == [1, 2, 3]
    assert "author_adoption" not in result


def test_a_name_started_then_misspelled_is_counted_and_named() -> None:
    """"Drasdio" holds Draskou's opening "Dras": a misspelling, not a miss; a short name has no such check."""
    answers = ["I am Draskou.", "I am Drasdio, built by Radria Studio.", "I am an assistant."]
    result = identity_scores(answers, "Draskou", "Radria Studio")
    assert result["adoption"] == pytest.approx(1 / 3)
    assert result["misspelled"] == pytest.approx(1 / 3)
    assert [o["why"] for o in result["offending"]] == ["starts 'Dras' but misspells 'Draskou'",
                                                       "does not mention 'Draskou'"]
    assert identity_scores(["I am Novel."], "Nova", None)["misspelled"] == 0.0  # too short to tell


def test_identity_removal_does_not_glue_text_into_an_old_name() -> None:
    # Removing "Nova" from "GNovaLM" must not leave "GLM" behind.
    result = identity_scores(["I am GNovaLM"], "Nova", None, old_names=["GLM"], old_authors=[])
    assert result["leakage"] == 0.0


def test_identity_no_answers_and_bad_name() -> None:
    assert identity_scores([], "Nova", None) == {"adoption": 0.0, "leakage": 0.0, "misspelled": 0.0, "n": 0,
                                                 "offending": []}
    with pytest.raises(ValueError):
        identity_scores(["x"], "  ", None)


def test_bundled_probes_are_bilingual() -> None:
    probes = load_probes()
    assert 20 <= len(probes) <= 40
    contents = [conv[-1]["content"] for conv in probes]
    assert all(conv[-1]["role"] == "user" for conv in probes)
    chinese = [c for c in contents if any("\u4e00" <= ch <= "\u9fff" for ch in c)]
    assert len(chinese) == len(probes) // 2
    assert len(set(contents)) == len(contents)


def test_load_user_probes(tmp_path: Path) -> None:
    path = tmp_path / "probes.jsonl"
    lines = [{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "Who are you?"}]}]
    path.write_text(json.dumps(lines[0]) + "\n\n", encoding="utf-8")
    assert load_probes(path) == [lines[0]["messages"]]


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ("{not json", "not valid JSON"),
        ('{"conversations": []}', '"messages" list'),
        ('{"messages": []}', "empty"),
        ('{"messages": [{"role": "user"}]}', '"content"'),
        ('{"messages": [{"role": "assistant", "content": "hi"}]}', "last message"),
    ],
)
def test_load_probes_names_file_and_line(tmp_path: Path, bad_line: str, reason: str) -> None:
    path = tmp_path / "probes.jsonl"
    good = json.dumps({"messages": [{"role": "user", "content": "你是谁？"}]}, ensure_ascii=False)
    path.write_text(good + "\n" + bad_line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"probes\.jsonl:2: .*{reason}"):
        load_probes(path)


def test_load_probes_missing_or_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_probes(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="no probes"):
        load_probes(empty)


# ---------------------------------------------------------------- degeneration


def test_units_split_cjk_characters_and_latin_words() -> None:
    assert units("我爱Python 3.11!") == ["我", "爱", "Python", "3", "11"]
    assert units("  ，。!? ") == []


@pytest.mark.parametrize(
    "text",
    [
        "I am Nova. I am Nova. I am Nova. I am Nova.",
        "好的好的好的好的好的好的",
        "哈哈哈哈哈哈",  # one unit, 6 copies
        "The answer is: yes yes yes yes yes yes, really.",
        "正文开始。我很高兴见到你。我很高兴见到你。我很高兴见到你。",  # 7-unit block x3
    ],
)
def test_loops_are_flagged(text: str) -> None:
    assert has_loop(text)


@pytest.mark.parametrize(
    "text",
    [
        "1 + 1 = 2.",
        "哈哈",
        "哈哈哈",  # 3 copies but only 3 units
        "very very very good",  # 3 copies but only 3 units
        "I am Nova. I am Nova.",  # only 2 copies
        "细胞理论是生物科学的一个理论，它认为所有生命体都是由细胞所构成。",
        "",
    ],
)
def test_normal_text_is_not_flagged(text: str) -> None:
    assert not has_loop(text)


def test_loop_parameters_and_location() -> None:
    assert find_loop("x y I am Nova. I am Nova. I am Nova.") == (2, 3, 3)
    assert has_loop("哈哈哈", min_span=3)
    assert not has_loop("I am Nova. I am Nova. I am Nova.", max_n=2)
    assert not has_loop("好的好的好的好的", min_repeats=5)
    with pytest.raises(ValueError):
        has_loop("x", min_repeats=1)
    assert loop_rate(["好的好的好的", "你好", "a b c", "a a a a a a"]) == 0.5
    assert loop_rate([]) == 0.0


def test_distinct_n_by_hand() -> None:
    # units: [a, b, a] and [b] -> unigrams a,b,a,b (2 unique / 4); bigrams (a,b),(b,a) (2 / 2).
    assert distinct_n(["a b a", "b"], 1) == 0.5
    assert distinct_n(["a b a", "b"], 2) == 1.0
    # 好好好 -> unigrams 1/3; bigrams (好,好) x2 -> 1/2; no trigram crosses into the second text.
    assert distinct_n(["好好好", "好"], 1) == 0.25
    assert distinct_n(["好好好"], 2) == 0.5
    assert distinct_n(["好好好", "好"], 3) == 1.0
    assert distinct_n(["好"], 2) == 0.0
    assert distinct_n([], 1) == 0.0


def test_finish_reason_share() -> None:
    shares = finish_reason_share(["stop", "stop", "length", "tool_calls"])
    assert shares == {"stop": 0.5, "length": 0.25, "tool_calls": 0.25}
    assert finish_reason_share([]) == {"stop": 0.0, "length": 0.0}


def test_length_stats() -> None:
    stats = length_stats(["你好", "a b c d"], ["你好世界", "a b"])  # 2 and 4 units vs 4 and 2 units
    assert stats == {"pred_len_mean": 3.0, "ref_len_mean": 3.0, "len_ratio": 1.0}
    assert length_stats(["你好"], [""])["len_ratio"] == 0.0


def test_degeneration_metrics_combined() -> None:
    preds = ["好的好的好的好的", "我是Nova。", "Hello there"]
    refs = ["好的", "我是Nova。", "Hello"]
    result = degeneration_metrics(preds, refs, ["length", "stop", "stop"])
    assert result["n"] == 3
    assert result["loop_rate"] == pytest.approx(1 / 3)
    assert result["looping_indices"] == [0]
    assert result["pred_len_mean"] == pytest.approx((8 + 3 + 2) / 3)
    assert result["ref_len_mean"] == pytest.approx((2 + 3 + 1) / 3)
    assert result["len_ratio"] == pytest.approx(13 / 6)
    assert result["finish_reason"] == {"stop": pytest.approx(2 / 3), "length": pytest.approx(1 / 3)}
    # 13 unigrams: 好 的 我 是 Nova Hello there -> 7 unique.
    assert result["distinct-1"] == pytest.approx(7 / 13)
    with pytest.raises(ValueError):
        degeneration_metrics(preds, refs[:2])
