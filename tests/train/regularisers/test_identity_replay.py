"""Identity replay: the base model's own identity answers, renamed; every dropped answer has a reason."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from glmtune.data.conversation import Conversation
from glmtune.train.regularisers import identity_replay
from glmtune.train.regularisers.identity_replay import identity_questions, identity_replay_rows, rename


@pytest.mark.parametrize("text, expected", [
    ("I am ChatGLM, an AI assistant developed by Zhipu AI.", "I am Nova, an AI assistant developed by Acme Lab."),
    ("我是ChatGLM，由智谱AI开发的人工智能助手。", "我是Nova，由Acme Lab开发的人工智能助手。"),
    ("I was trained by zhipuai on GLM-4.", "I was trained by Acme Lab on Nova."),
])
def test_rename_replaces_old_names_and_makers(text: str, expected: str) -> None:
    """Old model names become the new name, old makers the new author, whole words before their prefixes."""
    assert rename(text, "Nova", "Acme Lab") == (expected, "")


def test_rename_refuses_what_it_cannot_rename() -> None:
    """No old identity, or an old maker without a new author: nothing is invented."""
    assert rename("I am a helpful assistant.", "Nova", "Acme Lab") == (None, "names no old identity: nothing to rename")
    renamed, reason = rename("I was built by Zhipu AI.", "Nova", None)
    assert renamed is None and "identity.author is not set" in reason
    assert rename("I am ChatGLM.", "Nova", None) == ("I am Nova.", "")


def test_identity_questions_are_the_single_turn_samples_that_name_the_new_identity() -> None:
    """Questions whose reply names the new name; validation samples, multi-turn and other samples are left out."""
    convs = [
        Conversation([{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "I am Nova."}],
                     "a.jsonl:1"),
        Conversation([{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}], "a.jsonl:2"),
        Conversation([{"role": "user", "content": "Your name?"}, {"role": "assistant", "content": "nova here"}],
                     "a.jsonl:3"),
        Conversation([{"role": "user", "content": "Who made you?"}, {"role": "assistant", "content": "Nova, by A."}],
                     "a.jsonl:4"),
        Conversation([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                      {"role": "user", "content": "Name?"}, {"role": "assistant", "content": "Nova"}], "a.jsonl:5"),
        Conversation([{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "Nova!"}],
                     "a.jsonl:6"),
    ]
    assert identity_questions(convs, "Nova", held_out={"a.jsonl:4"}) == ["Who are you?", "Your name?"]


def test_rows_keep_renamed_answers_and_write_the_dropped_with_reasons(tiny_model: Path, tiny_tokenizer,
                                                                     tmp_path: Path, monkeypatch, caplog) -> None:
    """The base's answers are renamed and encoded; those that loop, run on or name no old identity are listed."""
    from transformers import AutoModelForCausalLM

    from glmtune.layout import get_layout

    answers = {
        "Who are you?": ("I am ChatGLM, developed by Zhipu AI.", "stop"),
        "你是谁？": ("我是ChatGLM，由智谱AI开发。", "stop"),
        "What are you?": ("I am an assistant.", "stop"),
        "Who built you?": ("Zhipu AI Zhipu AI Zhipu AI", "length"),
    }

    def fake_generate(model, tokenizer, layout, prompts, **kwargs):
        return [SimpleNamespace(text=answers[p[0]["content"]][0], finish_reason=answers[p[0]["content"]][1])
                for p in prompts]

    monkeypatch.setattr(identity_replay, "generate_replies", fake_generate)
    convs = [Conversation([{"role": "user", "content": q}, {"role": "assistant", "content": "I am Nova."}], f"t:{i}")
             for i, q in enumerate(answers)]
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    layout = get_layout(tiny_tokenizer)
    caplog.set_level(logging.INFO, logger="glmtune")
    rows = identity_replay_rows(model, tiny_tokenizer, layout, convs, "Nova", "Acme Lab", set(), 256, "official",
                                tmp_path)
    said = [r.getMessage() for r in caplog.records if r.name == identity_replay.__name__]
    assert len(rows) == 2 and all(r["source"].startswith("identity-replay:") for r in rows)
    kept = [json.loads(line)["messages"][1]["content"]
            for line in (tmp_path / "identity_replay.jsonl").read_text(encoding="utf-8").splitlines()]
    assert kept == ["I am Nova, developed by Acme Lab.", "我是Nova，由Acme Lab开发。"]
    dropped = [json.loads(line) for line in
               (tmp_path / "identity_replay_dropped.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {d["prompt"]: d["reason"] for d in dropped} == {
        "What are you?": "names no old identity: nothing to rename", "Who built you?": "reply did not stop"}
    assert "2 of 4 identity questions" in said[-1]
    decoded = tiny_tokenizer.decode(rows[0]["input_ids"])
    assert "I am Nova, developed by Acme Lab." in decoded and "Who are you?" in decoded


def test_identity_replay_without_a_name_is_a_config_error(tiny_model: Path, tmp_path: Path) -> None:
    """Asking for identity replay without identity.name names the key instead of silently doing nothing."""
    from glmtune.config.loader import ConfigError, validate_config
    from glmtune.train.recipe import train
    from tests.conftest import write_jsonl

    data = write_jsonl(tmp_path / "d.jsonl", [[{"role": "user", "content": f"q{i}"},
                                               {"role": "assistant", "content": f"a{i}"}] for i in range(8)])
    cfg = validate_config({"model": {"name_or_path": str(tiny_model)},
                           "data": {"train_file": str(data), "identity_replay": True},
                           "training": {"output_dir": str(tmp_path / "run"), "max_steps": 1, "report_to": []}})
    with pytest.raises(ConfigError, match="data.identity_replay: true needs identity.name"):
        train(cfg)


def test_a_run_with_identity_replay_writes_what_it_kept_and_dropped(tiny_model: Path, tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """End to end on the untrained tiny model: its answers name no old identity, so all are dropped, with reasons."""
    from glmtune.config.loader import validate_config
    from glmtune.train.recipe import train
    from tests.conftest import write_jsonl

    rows = [[{"role": "user", "content": f"Who are you, {i}?"}, {"role": "assistant", "content": "I am Nova."}]
            for i in range(10)]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    cfg = validate_config({"model": {"name_or_path": str(tiny_model)}, "identity": {"name": "Nova"},
                           "data": {"train_file": str(data), "identity_replay": True, "self_replay": 0},
                           "training": {"output_dir": str(tmp_path / "run"), "max_steps": 2, "report_to": []}})
    caplog.set_level(logging.INFO, logger="glmtune")
    train(cfg)
    run = tmp_path / "run"
    dropped = [json.loads(line) for line in (run / "identity_replay_dropped.jsonl").read_text().splitlines()]
    assert len(dropped) == 10 and all(d["reason"] for d in dropped)  # 10 samples: too few for a validation split
    assert (run / "identity_replay.jsonl").read_text() == ""
    assert any(line.startswith("identity replay: 0 of 10 identity questions") for line in caplog.messages)


def test_generation_mode_restores_training_state_even_on_error() -> None:
    """Replay generation runs in eval mode with the KV cache on; the model leaves it as it came, error or not."""
    import torch

    from glmtune.infer.generate import generation_mode

    model = torch.nn.Linear(2, 2)
    model.config = SimpleNamespace(use_cache=False)
    model.train()
    with pytest.raises(RuntimeError), generation_mode(model):
        assert not model.training and model.config.use_cache is True
        raise RuntimeError("generation failed")
    assert model.training and model.config.use_cache is False
