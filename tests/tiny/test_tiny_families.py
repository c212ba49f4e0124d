"""make-tiny --family: real architecture classes, special tokens, stop ids and hand-checked chat templates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from glmtune.tiny.families import FAMILIES, FAMILY_NAMES

CONV = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "你好"},
    {"role": "assistant", "content": "Hi."},
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "4"},
]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "北京"}}}
TOOL_CONV = [
    {"role": "user", "content": "Weather?"},
    {"role": "assistant", "content": "", "tool_calls": [CALL]},
    {"role": "tool", "content": "晴"},
    {"role": "assistant", "content": "Sunny."},
]

GLM_TEXT = (
    "[gMASK]<sop><|system|>\nYou are terse.<|user|>\n你好<|assistant|>\nHi.<|user|>\n2+2?<|assistant|>\n4"
)
EXPECTED = {
    "glm4": GLM_TEXT,
    "glm4-0414": GLM_TEXT,
    "glm-z1": GLM_TEXT,
    "glm4-moe": GLM_TEXT.replace("<|assistant|>\n", "<|assistant|>\n<think></think>\n"),
    "qwen2": "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n"
             "<|im_start|>assistant\nHi.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
             "<|im_start|>assistant\n4<|im_end|>\n",
    "qwen3": "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n"
             "<|im_start|>assistant\nHi.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
             "<|im_start|>assistant\n<think>\n\n</think>\n\n4<|im_end|>\n",
    "llama3": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\n你好<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\nHi.<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>",
}
GENERATION_PROMPT = {
    "glm4": "<|assistant|>", "glm4-0414": "<|assistant|>", "glm-z1": "<|assistant|>\n<think>",
    "glm4-moe": "<|assistant|>",
    "qwen2": "<|im_start|>assistant\n",
    "qwen3": "<|im_start|>assistant\n", "llama3": "<|start_header_id|>assistant<|end_header_id|>\n\n",
}
QWEN_TOOLS_TEXT = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
    '{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}'
    "\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
)
QWEN_CALL_TEXT = (
    "<|im_start|>user\nWeather?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n"
    '{"name": "get_weather", "arguments": {"city": "北京"}}\n</tool_call><|im_end|>\n'
    "<|im_start|>user\n<tool_response>\n晴\n</tool_response><|im_end|>\n"
    "<|im_start|>assistant\nSunny.<|im_end|>\n"
)
GLM_0414_TOOLS = (
        "[gMASK]<sop><|system|>\n# 可用工具\n\n## get_weather\n\n"
        '{\n    "name": "get_weather",\n    "parameters": {\n        "type": "object"\n    }\n}\n'
        "在调用上述函数时，请使用 Json 格式表示调用的参数。<|user|>\nWeather?"
        '<|assistant|>get_weather \n{"city": "北京"}<|observation|>\n晴<|assistant|>\nSunny.'
)
EXPECTED_TOOLS = {
    "glm4-moe": (
        "[gMASK]<sop><|system|>\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        '{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}\n</tools>\n\n'
        "For each function call, output the function name and arguments within the following XML format:\n"
        "<tool_call>{function-name}\n<arg_key>{arg-key-1}</arg_key>\n<arg_value>{arg-value-1}</arg_value>\n"
        "<arg_key>{arg-key-2}</arg_key>\n<arg_value>{arg-value-2}</arg_value>\n...\n</tool_call>"
        "<|user|>\nWeather?<|assistant|>\n<think></think>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n"
        "<arg_value>北京</arg_value>\n</tool_call><|observation|>\n<tool_response>\n晴\n</tool_response>"
        "<|assistant|>\n<think></think>\nSunny."
    ),
    "qwen2": "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n"
             + QWEN_TOOLS_TEXT + QWEN_CALL_TEXT,
    "qwen3": "<|im_start|>system\n" + QWEN_TOOLS_TEXT
             + QWEN_CALL_TEXT.replace("assistant\nSunny.", "assistant\n<think>\n\n</think>\n\nSunny."),
    "llama3": (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nGiven the following functions, please "
        "respond with a JSON for a function call with its proper arguments that best answers the given "
        "prompt."
        '\n\nRespond in the format {"name": function name, "parameters": dictionary of argument name and its '
        "value}.Do not use variables.\n\n"
        '{\n    "type": "function",\n    "function": {\n        "name": "get_weather",\n'
        '        "parameters": {\n            "type": "object"\n        }\n    }\n}\n\n'
        "Weather?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        '{"name": "get_weather", "parameters": {"city": "北京"}}<|eot_id|>'
        "<|start_header_id|>ipython<|end_header_id|>\n\n晴<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nSunny.<|eot_id|>"
    ),
}
THINK_CONV = [
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "4", "reasoning_content": "Add them.\n"},
    {"role": "user", "content": "3+3?"},
    {"role": "assistant", "content": "<think>\nAdd again.\n</think>\n\n6"},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello", "reasoning_content": ""},
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """All five families, each built once for this module."""
    from glmtune.tiny.model import make_tiny
    from glmtune.world import tokenizer_corpus

    root = tmp_path_factory.mktemp("families")
    corpus = tokenizer_corpus(0)
    return {name: make_tiny(root / name, seed=0, family=name, corpus=corpus) for name in FAMILY_NAMES}


def tokenizer(built: dict[str, Path], family: str) -> Any:
    """The family's tokenizer, loaded the way users load it."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(built[family])


def render(tok: Any, messages: list[dict], **kwargs: Any) -> str:
    """Chat-template text."""
    return tok.apply_chat_template(messages, tokenize=False, **kwargs)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_family_loads_offline_with_real_classes(built: dict[str, Path], family: str):
    from transformers import AutoModelForCausalLM

    fam = FAMILIES[family]
    tok = tokenizer(built, family)
    model = AutoModelForCausalLM.from_pretrained(built[family])
    assert type(model).__name__ == fam.model_class
    assert 900_000 <= sum(p.numel() for p in model.parameters()) <= 5_000_000  # the MoE one: 0.98 M
    assert model.config.hidden_size == 128 and model.config.num_hidden_layers == 4
    assert model.config.num_key_value_heads == 2 and model.config.tie_word_embeddings
    assert json.loads((built[family] / "glmtune_tiny.json").read_text())["family"] == family
    vocab = tok.get_vocab()
    for token in fam.all_tokens:
        tid = vocab[token]
        assert tok.convert_tokens_to_ids(token) == tid and tok.convert_ids_to_tokens(tid) == token
        assert tok(token, add_special_tokens=False)["input_ids"] == [tid]
    assert (tok.eos_token, tok.pad_token) == (fam.eos, fam.pad)
    text = "北京是中国的首都。 12345 Hello, world!"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_stop_ids_are_the_family_stop_strings(built: dict[str, Path], family: str):
    tok = tokenizer(built, family)
    stops = [tok.convert_tokens_to_ids(t) for t in FAMILIES[family].stop]
    gen = json.loads((built[family] / "generation_config.json").read_text())
    assert gen["eos_token_id"] == stops
    assert gen["pad_token_id"] == tok.pad_token_id
    assert json.loads((built[family] / "config.json").read_text())["eos_token_id"] == stops


@pytest.mark.parametrize("family", [f for f in FAMILY_NAMES if f != "qwen3"])
def test_multi_turn_renders_exactly_and_prefix_stably(built: dict[str, Path], family: str):
    tok = tokenizer(built, family)
    full = render(tok, CONV)
    assert full == EXPECTED[family]
    assert render(tok, CONV[:4], add_generation_prompt=True).endswith(GENERATION_PROMPT[family])
    conversations = [CONV, TOOL_CONV] if not family.startswith("glm") else [CONV]
    for messages in conversations:
        kwargs = {"tools": TOOLS} if messages is TOOL_CONV else {}
        whole = render(tok, messages, **kwargs)
        for k in range(1, len(messages) + 1):
            assert whole.startswith(render(tok, messages[:k], **kwargs)), (family, k)
            if k < len(messages) and messages[k]["role"] == "assistant" and family != "glm-z1":
                prompt = render(tok, messages[:k], add_generation_prompt=True, **kwargs)
                assert whole.startswith(prompt), (family, k)


@pytest.mark.parametrize("family", sorted(EXPECTED_TOOLS))
def test_top_level_tools_and_calls_render(built: dict[str, Path], family: str):
    assert render(tokenizer(built, family), TOOL_CONV, tools=TOOLS) == EXPECTED_TOOLS[family]


def test_glm4_0414_renders_glm_shaped_calls_and_drops_the_generic_form(built: dict[str, Path]):
    tok = tokenizer(built, "glm4-0414")
    glm_shaped = [TOOL_CONV[0], {"role": "assistant", "metadata": "get_weather", "content": '{"city": "北京"}'},
                  {"role": "observation", "content": "晴"}, TOOL_CONV[3]]
    assert render(tok, glm_shaped, tools=TOOLS) == GLM_0414_TOOLS
    generic = render(tok, TOOL_CONV, tools=TOOLS)  # like the real template: tool_calls and `tool` vanish
    assert "北京" not in generic and "晴" not in generic and generic.endswith("<|assistant|>\n<|assistant|>\nSunny.")


def test_qwen2_injects_the_default_system_prompt_only_without_one(built: dict[str, Path]):
    tok = tokenizer(built, "qwen2")
    assert render(tok, CONV[1:2], add_generation_prompt=True) == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n"
    )
    assert "Qwen" not in render(tokenizer(built, "qwen3"), CONV[1:2])


def test_qwen3_multi_turn_renders_exactly(built: dict[str, Path]):
    tok = tokenizer(built, "qwen3")
    assert render(tok, CONV) == EXPECTED["qwen3"]
    assert render(tok, CONV[:4], add_generation_prompt=True).endswith(GENERATION_PROMPT["qwen3"])


def test_qwen3_thinks_after_the_last_query_only_and_can_be_told_not_to(built: dict[str, Path]):
    tok = tokenizer(built, "qwen3")
    full = render(tok, THINK_CONV)
    assert full == (
        "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n"
        "<|im_start|>user\n3+3?<|im_end|>\n<|im_start|>assistant\n6<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHello<|im_end|>\n"
    )
    # while a reply is the last message it keeps its reasoning; once the user asks again it loses it
    assert render(tok, THINK_CONV[:2]).endswith("<|im_start|>assistant\n<think>\nAdd them.\n</think>\n\n4<|im_end|>\n")
    assert not full.startswith(render(tok, THINK_CONV[:2]))
    # after the last query, a reply with reasoning keeps it even when more follows (a tool call, say)
    calls = [THINK_CONV[0], {"role": "assistant", "content": "", "reasoning_content": "Look it up.",
                             "tool_calls": [CALL]}, {"role": "tool", "content": "晴"}, TOOL_CONV[3]]
    whole = render(tok, calls, tools=TOOLS)
    assert all(whole.startswith(render(tok, calls[:k], tools=TOOLS)) for k in range(1, 5))
    assert "<|im_start|>assistant\n<think>\nLook it up.\n</think>\n\n<tool_call>" in whole
    prompt = THINK_CONV[:1]
    assert render(tok, prompt, add_generation_prompt=True).endswith("<|im_start|>assistant\n")
    assert render(tok, prompt, add_generation_prompt=True, enable_thinking=False).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n")
    # <think> and <tool_call> are ordinary added tokens: decoding without special tokens keeps them.
    ids = tok("<think>\nx\n</think>\n\n<tool_call><|im_end|>", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == "<think>\nx\n</think>\n\n<tool_call>"


def test_llama3_adds_bos_once(built: dict[str, Path]):
    tok = tokenizer(built, "llama3")
    bos = tok.convert_tokens_to_ids("<|begin_of_text|>")
    assert tok.bos_token_id == bos and tok("hi")["input_ids"][0] == bos
    out = tok.apply_chat_template(CONV[:2], tokenize=True, add_generation_prompt=True, return_dict=True)
    ids = out["input_ids"]
    assert ids.count(bos) == 1 and ids[0] == bos


def test_cli_family_flag_is_deterministic(built: dict[str, Path], tmp_path: Path):
    from glmtune.cli.main import build_parser, main

    flag = next(a for a in build_parser()._subparsers._group_actions[0].choices["make-tiny"]._actions
                if a.dest == "family")
    assert tuple(flag.choices) == FAMILY_NAMES and flag.default is None  # glm4, unless --chat-template says
    assert main(["make-tiny", "--out", str(tmp_path / "q"), "--family", "qwen3"]) == 0
    for name in ("tokenizer.json", "model.safetensors", "generation_config.json", "chat_template.jinja"):
        assert (tmp_path / "q" / name).read_bytes() == (built["qwen3"] / name).read_bytes()


def test_unknown_family_is_a_user_error(tmp_path: Path):
    from glmtune.errors import UserError
    from glmtune.tiny.model import make_tiny

    with pytest.raises(UserError, match="qwen3"):
        make_tiny(tmp_path / "x", family="mistral", corpus=[])
