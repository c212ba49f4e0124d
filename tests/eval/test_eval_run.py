"""``glmtune eval``: scoring a predictions file, generating on the tiny model, identity, retention, errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from glmtune.errors import DataError, UserError
from glmtune.eval.predictions import END_TOKENS, output_paths, read_predictions
from glmtune.eval.retention import key_correct, load_general, retention_scores
from glmtune.eval.run import evaluate
from glmtune.eval.text_metrics import score_pair
from tests.conftest import write_jsonl

ROWS = [
    {
        "prediction": "The cat sat on the mat today.",
        "reference": "The cat sat on the mat today.",
        "finish_reason": "stop",
        "stop_token": "<|user|>",
    },
    {
        "prediction": "今天天气很好，我们去公园散步吧。",
        "reference": "今天天气很好，我们去公园散步吧。",
        "finish_reason": "stop",
        "stop_token": "<|endoftext|>",
    },
    {
        "prediction": "好的好的好的好的好的",
        "reference": "好的，没问题。",
        "finish_reason": "length",
        "stop_token": None,
    },
    {
        "prediction": "",
        "reference": "Something else entirely.",
        "finish_reason": "stop",
        "stop_token": "<|observation|>",
    },
]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_scores_a_predictions_file_with_known_metrics(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="glmtune")
    metrics = evaluate(predictions=str(_write(tmp_path / "preds.jsonl", ROWS)), out=str(tmp_path / "eval"))
    loop_pair = score_pair(ROWS[2]["prediction"], ROWS[2]["reference"])
    text = metrics["text"]
    for key in ("rouge-1", "rouge-2", "rouge-l"):
        assert text[key] == pytest.approx((100 + 100 + loop_pair[key] + 0) / 4)
    assert text["bleu-4"] == pytest.approx((1 + 1 + loop_pair["bleu-4"] + 0) / 4)
    assert (text["n"], text["n_empty"], text["n_error"]) == (4, 1, 0)
    deg = metrics["degeneration"]
    assert deg["loop_rate"] == 0.25 and deg["looping_indices"] == [2]
    assert deg["finish_reason"] == {"stop": 0.75, "length": 0.25}
    assert "len_ratio" in deg and 0 < deg["distinct-1"] <= 1
    assert metrics["end_tokens"] == {**dict.fromkeys(END_TOKENS, 0.25), "other": 0.0, "none": 0.25}
    assert "identity" not in metrics and "retention" not in metrics
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text(encoding="utf-8"))
    assert saved["text"] == pytest.approx(text) and saved["end_tokens"] == metrics["end_tokens"]
    printed = "\n".join(caplog.messages)
    assert "rouge-1" in printed and "loop rate" in printed and "<|observation|>" in printed


def test_rows_without_reference_or_stop_token_are_scored_for_what_they_have(tmp_path: Path):
    rows = [{"prediction": "hello there friend"}, {"prediction": "a b c d", "reference": "a b c d"}]
    metrics = evaluate(predictions=str(_write(tmp_path / "p.jsonl", rows)), out=None)
    assert metrics["text"]["n"] == 1 and metrics["text"]["rouge-1"] == pytest.approx(100)
    assert metrics["end_tokens"] is None
    assert "finish_reason" not in metrics["degeneration"] and "len_ratio" not in metrics["degeneration"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"reference": "x"}', 'no "prediction"'),
        ("{not json", "not valid JSON"),
        ('{"prediction": 3}', "must be a string"),
        ('["prediction"]', "expected a JSON object"),
    ],
)
def test_a_bad_predictions_line_names_file_and_line(tmp_path: Path, line: str, message: str):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=message) as err:
        evaluate(predictions=str(path))
    assert f"{path}:3" in str(err.value)


def test_missing_files_and_bad_argument_mixes_are_user_errors(tmp_path: Path):
    with pytest.raises(DataError, match="not found"):
        read_predictions(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="empty"):
        read_predictions(_write(tmp_path / "empty.jsonl", []))
    with pytest.raises(UserError, match="not both"):
        evaluate(model="m", data="d.jsonl", predictions="p.jsonl")
    with pytest.raises(UserError, match="needs --model"):
        evaluate(data="d.jsonl")
    with pytest.raises(UserError, match="nothing to evaluate"):
        evaluate()
    with pytest.raises(UserError, match="--author needs --name"):
        evaluate(predictions="p.jsonl", identity_author="Acme")


def test_output_paths():
    assert output_paths("out") == (Path("out/metrics.json"), Path("out/metrics.predictions.jsonl"))
    assert output_paths("e/run1.json") == (Path("e/run1.json"), Path("e/run1.predictions.jsonl"))


def test_key_correct():
    assert key_correct("The answer is 124.", "124", "arithmetic")
    assert not key_correct("55 + 69 = 1240.", "124", "arithmetic")
    assert not key_correct("55 + 69 = 12.", "55", "arithmetic")  # only the stated result counts
    assert not key_correct("I have 168 apples", "68")
    assert key_correct("the capital is PARIS", "Paris") and key_correct("意大利的首都是罗马。", "罗马")
    assert not key_correct("anything", "  ")


def test_bundled_general_prompts_are_bilingual_and_checkable():
    rows = load_general()
    assert 25 <= len(rows) <= 40
    assert all(r["messages"][-1]["role"] == "user" and r["reference"] and r["key"] for r in rows)
    questions = "".join(r["messages"][-1]["content"] for r in rows)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in questions) and any(
        ch.isascii() and ch.isalpha() for ch in questions
    )
    assert all(key_correct(r["reference"], r["key"], r["kind"]) for r in rows)


def test_user_general_file_takes_last_assistant_turn_as_reference(tmp_path: Path):
    path = write_jsonl(
        tmp_path / "g.jsonl", [[{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]]
    )
    assert load_general(path) == [
        {"messages": [{"role": "user", "content": "2+2?"}], "reference": "4", "key": None, "kind": None}
    ]
    path.write_text('{"messages": [{"role": "assistant", "content": "hi"}]}\n', encoding="utf-8")
    with pytest.raises(DataError, match=f"{path}:1"):
        load_general(path)
    path.write_bytes('\ufeff{"messages": [{"role": "user", "content": "q"}]}\n\n'.encode() + b'{"x": "\xff"}\n')
    with pytest.raises(DataError, match=f"{path}:3: not valid UTF-8"):  # a byte-order mark is fine, line 3 is not
        load_general(path)


def test_retention_scores_count_regressions():
    rows = [
        {
            "messages": [{"role": "user", "content": "q"}],
            "reference": "Paris.",
            "key": "Paris",
            "kind": "capital",
        },
        {"messages": [{"role": "user", "content": "q2"}], "reference": "4", "key": "4", "kind": "arithmetic"},
    ]
    scores = retention_scores(rows, ["Paris.", "5"], ["London.", "4"])
    assert (
        scores["accuracy_base"] == 0.5 and scores["accuracy_tuned"] == 0.5 and scores["accuracy_change"] == 0
    )
    assert [r["index"] for r in scores["regressions"]] == [0] and scores["improvements"] == 1
    assert scores["identical"] == 0.0


@pytest.fixture(scope="module")
def tiny_adapter(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random (non-zero) LoRA adapter on the tiny model, so tuned and base answers differ."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    config = LoraConfig(
        task_type="CAUSAL_LM",
        r=4,
        lora_alpha=16,
        target_modules=["q_proj", "v_proj"],
        init_lora_weights=False,
    )
    out = tmp_path_factory.mktemp("adapter") / "adapter"
    get_peft_model(model, config).save_pretrained(out)
    return out


def test_generation_mode_writes_predictions_metrics_identity_and_retention(
    tiny_model: Path, tiny_adapter: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    import torch

    torch.set_num_threads(1)
    data = write_jsonl(
        tmp_path / "data.jsonl",
        [
            [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "2 + 3 = 5."}],
            [
                {"role": "user", "content": "你好"},
                {"role": "assistant", "content": "你好！"},
                {"role": "user", "content": "法国的首都是哪里？"},
                {"role": "assistant", "content": "法国的首都是巴黎。"},
            ],
            [{"role": "user", "content": "no reply here"}],  # rejected: nothing to compare against
        ],
    )
    probes = write_jsonl(
        tmp_path / "probes.jsonl",
        [[{"role": "user", "content": "Who are you?"}], [{"role": "user", "content": "你是谁？"}]],
    )
    general = tmp_path / "general.jsonl"
    general.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in load_general()[:3]), encoding="utf-8"
    )
    caplog.set_level(logging.INFO, logger="glmtune")
    metrics = evaluate(
        model=str(tiny_model),
        adapter=str(tiny_adapter),
        data=str(data),
        out=str(tmp_path / "ev"),
        identity_name="Nova",
        identity_author="Acme Lab",
        probes=str(probes),
        general=str(general),
        max_new_tokens=6,
        batch_size=4,
    )
    lines = (tmp_path / "ev" / "metrics.predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    for line in lines:
        row = json.loads(line)
        assert {
            "source",
            "messages",
            "prediction",
            "reference",
            "finish_reason",
            "stop_token",
            "num_tokens",
        } <= set(row)
        assert row["messages"][-1]["role"] == "user" and row["num_tokens"] <= 6
    assert json.loads(lines[1])["reference"] == "法国的首都是巴黎。"
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text(encoding="utf-8"))
    for key in ("text", "degeneration", "end_tokens", "generation", "identity", "retention"):
        assert key in metrics and key in saved
    assert metrics["generation"]["n"] == 2 and metrics["generation"]["skipped"] == 1
    assert {"adoption", "leakage", "author_adoption", "offending"} <= set(metrics["identity"])
    assert metrics["identity"]["n"] == 2
    assert {
        "rouge-l_tuned_vs_base",
        "accuracy_base",
        "accuracy_tuned",
        "accuracy_change",
        "n_checkable",
    } <= set(metrics["retention"])
    assert metrics["retention"]["n"] == 3
    said = [r.getMessage() for r in caplog.records if r.name.startswith("glmtune.")]
    assert any("skipped" in s for s in said) and any("identity" in s for s in said)


def test_retention_base_answers_are_the_model_without_adapter(tiny_model: Path, tiny_adapter: Path):
    import torch

    from glmtune.eval.retention import base_and_tuned_answers
    from glmtune.infer.generate import generate_replies
    from glmtune.layout import get_layout
    from glmtune.models import load_model, load_tokenizer

    torch.set_num_threads(1)
    tokenizer = load_tokenizer(str(tiny_model))
    layout = get_layout(tokenizer)
    prompts = [r["messages"] for r in load_general()[:4]]
    base, tuned = base_and_tuned_answers(
        load_model(str(tiny_model), adapter=str(tiny_adapter)),
        tokenizer,
        layout,
        prompts,
        max_new_tokens=6,
        batch_size=4,
    )
    plain = generate_replies(
        load_model(str(tiny_model)), tokenizer, layout, prompts, max_new_tokens=6, batch_size=4
    )
    assert [g.text for g in base] == [g.text for g in plain]
    assert [g.text for g in tuned] != [g.text for g in plain]


def test_loop_rate_counts_replies_the_guard_cut() -> None:
    from glmtune.eval.predictions import score_predictions

    rows = [
        {"prediction": "LilyLilyLilyLilyLilyLily", "finish_reason": "length", "loop": True},  # no repeated word
        {"prediction": "I am Nova.", "finish_reason": "stop", "loop": False},
        {"prediction": "a fine answer", "finish_reason": "stop"},  # older predictions files have no flag
        {"prediction": "go on " * 12, "finish_reason": "length", "loop": False},  # the text itself repeats
    ]
    deg = score_predictions(rows)["degeneration"]
    assert deg["looping_indices"] == [0, 3] and deg["loop_rate"] == 0.5 and deg["guard_cut"] == 1


def test_a_loop_flag_that_is_not_a_boolean_names_the_line(tmp_path) -> None:
    from glmtune.errors import DataError
    from glmtune.eval.predictions import read_predictions

    path = tmp_path / "p.jsonl"
    path.write_text('{"prediction": "x", "loop": "yes"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"p.jsonl:1: \"loop\" must be true, false or null"):
        read_predictions(path)
