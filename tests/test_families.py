"""Every tiny family: the template-derived layout matches the template, trains, and generation stops on
the family's own end-of-turn token."""

from __future__ import annotations

import pytest

from glmtune.infer.generate import generate_replies
from glmtune.layout import get_layout
from glmtune.layout.base import IGNORE_INDEX, LayoutError, template_ids
from glmtune.layout.verify import verify_layout

FAMILIES = {"glm4": "<|user|>", "glm4-0414": "<|user|>", "qwen2": "<|im_end|>", "qwen3": "<|im_end|>",
            "llama3": "<|eot_id|>"}
CONVERSATIONS = [
    [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello! 你好"}],
    [{"role": "system", "content": "You are Nova."}, {"role": "user", "content": "Who are you?"},
     {"role": "assistant", "content": "I am Nova."}, {"role": "user", "content": "2 + 2?"},
     {"role": "assistant", "content": "4."}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "old", "loss": False},
     {"role": "user", "content": "b"}, {"role": "assistant", "content": "new"}],
]


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_model(request, tmp_path_factory):
    from glmtune.tiny.model import make_tiny
    from glmtune.world import tokenizer_corpus

    return request.param, make_tiny(tmp_path_factory.mktemp(request.param) / "m", seed=0, family=request.param,
                                    corpus=tokenizer_corpus(0))


def test_layout_matches_template_and_trains_replies_with_end_token(family_model):
    from transformers import AutoTokenizer

    family, path = family_model
    tok = AutoTokenizer.from_pretrained(path)
    layout = get_layout(tok)
    end = tok.convert_tokens_to_ids(FAMILIES[family])
    assert end in layout.stop_ids
    for combine in (False, True):
        conversations = CONVERSATIONS
        if family == "qwen3" and not combine:  # drops earlier replies' <think>: multi-turn is refused, clearly
            with pytest.raises(LayoutError, match="data.combine: true"):
                layout.encode(CONVERSATIONS[1], combine=False)
            conversations = [CONVERSATIONS[0], CONVERSATIONS[2]]  # the earlier reply of [2] is not trained
        assert verify_layout(layout, tok, conversations, combine=combine) == len(conversations)
        for messages in conversations:
            sample = layout.encode(messages, combine=combine)
            expected = template_ids(tok, messages)
            assert sample.input_ids[: len(expected)] == expected
            trained = tok.decode([t for t, label in zip(sample.input_ids, sample.labels) if label != IGNORE_INDEX])
            last = messages[-1]["content"]
            assert last in trained and FAMILIES[family] in trained
            assert "old" not in trained
            if combine:
                assert all(m["content"] not in trained for m in messages[:-1] if m["role"] == "assistant")


def test_a_few_steps_train_and_predict_stops_on_the_family_token(family_model, tmp_path):
    import json

    from glmtune.config.loader import validate_config
    from glmtune.models import load_model, load_tokenizer
    from glmtune.train.recipe import train
    from tests.conftest import write_jsonl

    family, path = family_model
    data = write_jsonl(tmp_path / "d.jsonl", [CONVERSATIONS[0]] * 16)
    # a gentle rate: at 1e-2 the loss of these random tiny models jumps about after a few steps, and whether the
    # reply stops comes down to rounding (a rounding-level change of the norm's backward flipped glm4 and
    # glm4-0414); Qwen3's empty think block is a run of newlines that a fast rate collapses onto ("\n" forever)
    steps, rate = 60, 5e-3
    # repeated samples on purpose (no dedupe), no self-replay from an untrained model
    cfg = validate_config({"model": {"name_or_path": str(path)},
                           "data": {"train_file": str(data), "repair": False, "self_replay": 0},
                           "training": {"output_dir": str(tmp_path / "run"), "max_steps": steps,
                                        "learning_rate": rate, "per_device_train_batch_size": 8,
                                        "logging_steps": 1, "early_stopping": False, "report_to": []}})
    result = train(cfg)
    assert result.final_loss < result.first_loss
    tok = load_tokenizer(str(tmp_path / "run"))
    model = load_model(str(path), adapter=str(tmp_path / "run"))
    gen = generate_replies(model, tok, get_layout(tok), [[{"role": "user", "content": "hi"}]], 24)[0]
    assert gen.finish_reason == "stop" and gen.stop_token in (FAMILIES[family], tok.eos_token), gen
    assert json.loads((path / "generation_config.json").read_text())["eos_token_id"]
