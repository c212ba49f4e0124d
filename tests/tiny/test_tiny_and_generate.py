"""make-tiny output, stop ids, and batched generation that stops on every GLM-4 end token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from glmtune.infer.generate import generate_replies, left_pad, split_reply
from glmtune.layout import get_layout


def test_tiny_loads_offline_with_auto_classes(tiny_model: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert type(model).__name__ == "Glm4ForCausalLM"
    n = sum(p.numel() for p in model.parameters())
    assert 1_000_000 <= n <= 5_000_000
    for token in ("[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>", "<|endoftext|>"):
        assert tok.convert_tokens_to_ids(token) != tok.unk_token_id
        assert tok.convert_ids_to_tokens(tok.convert_tokens_to_ids(token)) == token
    zh = "北京是中国的首都。"
    assert tok.decode(tok(zh)["input_ids"]) == zh


def test_generation_config_lists_three_stop_ids(tiny_model: Path, tiny_tokenizer):
    gen = json.loads((tiny_model / "generation_config.json").read_text())
    expected = [tiny_tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|user|>", "<|observation|>")]
    assert gen["eos_token_id"] == expected


def test_template_renders_like_glm4_9b_chat(tiny_tokenizer):
    messages = [
        {"role": "system", "content": "", "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "metadata": "f", "content": "{}"},
        {"role": "observation", "content": "ok"},
        {"role": "assistant", "content": ""},
    ]
    text = tiny_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "[gMASK]<sop><|system|>\n你是一个名为 ChatGLM 的人工智能助手。你是基于智谱AI训练的语言模型 GLM-4 模型开发的，"
        "你的任务是针对用户的问题和要求提供适当的答复和支持。\n\n# 可用工具\n## f\n\n{\n    \"name\": \"f\",\n"
        "    \"parameters\": {}\n}\n在调用上述函数时，请使用 Json 格式表示调用的参数。<|user|>\nhi<|assistant|>f\n{}"
        "<|observation|>\nok<|assistant|>"
    )


def test_make_tiny_is_deterministic(tmp_path: Path, tiny_model: Path):
    from glmtune.tiny.model import make_tiny
    from glmtune.world import tokenizer_corpus

    again = make_tiny(tmp_path / "again", seed=0, corpus=tokenizer_corpus(0))
    assert (again / "tokenizer.json").read_bytes() == (tiny_model / "tokenizer.json").read_bytes()
    assert (again / "model.safetensors").read_bytes() == (tiny_model / "model.safetensors").read_bytes()


def test_cli_make_tiny_trains_its_tokenizer_on_the_world_corpus(tmp_path: Path, tiny_model: Path,
                                                                capsys: pytest.CaptureFixture[str]):
    """tiny/ takes its corpus as an argument; ``glmtune make-tiny`` passes ``world.tokenizer_corpus(seed)``, so
    the command writes the same bytes as ``make_tiny(..., corpus=tokenizer_corpus(0))`` (the tests' model)."""
    from glmtune.cli.main import main

    assert main(["make-tiny", "--out", str(tmp_path / "cli"), "--seed", "0"]) == 0
    assert "wrote a tiny glm4 model" in capsys.readouterr().out
    for name in ("tokenizer.json", "tokenizer_config.json", "model.safetensors", "config.json",
                 "generation_config.json"):
        assert (tmp_path / "cli" / name).read_bytes() == (tiny_model / name).read_bytes(), name


def test_left_pad_and_split_reply():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert split_reply([4, 5, 9, 3], stop_ids=[0, 7, 9], pad_id=0) == ([4, 5], 9)
    assert split_reply([4, 5, 6], stop_ids=[0, 7, 9], pad_id=0) == ([4, 5, 6], None)


def forced_model(tiny_model: Path, favourite: int):
    """The tiny model with an lm_head bias that makes ``favourite`` the greedy choice at every step."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[favourite] = 1e4
    model.lm_head = head
    return model.eval()


@pytest.mark.parametrize("stop", ["<|user|>", "<|observation|>", "<|endoftext|>"])
def test_generation_stops_on_each_stop_token(tiny_model, tiny_tokenizer, stop):
    layout = get_layout(tiny_tokenizer)
    model = forced_model(tiny_model, tiny_tokenizer.convert_tokens_to_ids(stop))
    prompts = [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "a longer question here"}]]
    gens = generate_replies(model, tiny_tokenizer, layout, prompts, max_new_tokens=8)
    assert [(g.finish_reason, g.stop_token, g.text) for g in gens] == [("stop", stop, "")] * 2


def test_generation_without_stop_reports_length(tiny_model, tiny_tokenizer):
    layout = get_layout(tiny_tokenizer)
    word = tiny_tokenizer("hello")["input_ids"][0]
    model = forced_model(tiny_model, word)
    gens = generate_replies(model, tiny_tokenizer, layout, [[{"role": "user", "content": "hi"}]], max_new_tokens=5)
    assert gens[0].finish_reason == "length" and gens[0].num_tokens == 5


def test_batched_equals_one_by_one(tiny_model, tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    layout = get_layout(tiny_tokenizer)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    prompts = [[{"role": "user", "content": q}] for q in ("hi", "what is the capital of France?", "你好吗", "2+2")]
    batched = generate_replies(model, tiny_tokenizer, layout, prompts, max_new_tokens=6, batch_size=4)
    single = [generate_replies(model, tiny_tokenizer, layout, [p], max_new_tokens=6)[0] for p in prompts]
    assert [g.text for g in batched] == [g.text for g in single]


def test_tail_loop_rule():
    from glmtune.infer.runaway import LoopRule, tail_loops

    rule = LoopRule(min_repeats=4, min_span=8, max_n=4)
    assert tail_loops([9, 1, 2, 1, 2, 1, 2, 1, 2], rule)
    assert not tail_loops([9, 1, 2, 1, 2, 1, 2], rule)  # only 3 repeats
    assert tail_loops([5] * 8, rule)
    assert not tail_loops([5] * 7, rule)  # span 7 < 8
    assert not tail_loops(list(range(20)), rule)


def test_repetition_guard_cuts_a_looping_reply(tiny_model, tiny_tokenizer):
    from glmtune.infer.runaway import LoopRule

    layout = get_layout(tiny_tokenizer)
    word = tiny_tokenizer("hello")["input_ids"][0]
    model = forced_model(tiny_model, word)  # always the same token: a loop of n = 1
    prompt = [[{"role": "user", "content": "hi"}]]
    cut = generate_replies(model, tiny_tokenizer, layout, prompt, max_new_tokens=64, loop_rule=LoopRule())[0]
    assert cut.loop and cut.finish_reason == "length" and cut.num_tokens == 16
    free = generate_replies(model, tiny_tokenizer, layout, prompt, max_new_tokens=64, loop_rule=None)[0]
    assert not free.loop and free.num_tokens == 64
