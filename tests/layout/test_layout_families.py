"""The template-derived layout for every tiny family on the varied fixture: multi-turn, system prompts, tools,
tool calls and results mapped onto each template's own message form, reasoning, and clear refusals."""

from __future__ import annotations

from typing import Any

import pytest

from glmtune.layout import get_layout
from glmtune.layout.base import IGNORE_INDEX, LayoutError
from glmtune.layout.verify import reference_ids, verify_layout
from glmtune.tiny.families import FAMILY_NAMES

GLM_TRAINED = ('add\n{"a": 3, "b": 4}<|observation|>get_weather\n{"city": "Paris"}<|observation|>'
               "\n3 + 4 = 7, and it is raining in Paris.<|user|>")
QWEN_TRAINED = ('<tool_call>\n{"name": "add", "arguments": {"a": 3, "b": 4}}\n</tool_call><|im_end|>\n'
                '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n'
                "3 + 4 = 7, and it is raining in Paris.<|im_end|>\n")
MOE_CALL = "\n<think></think>\n<tool_call>{}\n</tool_call><|observation|>"
# What is learned from the two-call conversation of the fixture, written out by hand from each format.
TOOL_TRAINED = {
    "glm4": GLM_TRAINED,
    "glm4-0414": GLM_TRAINED.replace("add\n", "add \n").replace("get_weather\n", "get_weather \n"),
    # the generation prompt opens <think>: calls before the answer are context, the answer is written after it
    "glm-z1": "</think>\n3 + 4 = 7, and it is raining in Paris.<|user|>",
    "glm4-moe": (MOE_CALL.format("add\n<arg_key>a</arg_key>\n<arg_value>3</arg_value>\n<arg_key>b</arg_key>\n"
                                 "<arg_value>4</arg_value>")
                 + MOE_CALL.format("get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>")
                 + "\n<think></think>\n3 + 4 = 7, and it is raining in Paris.<|user|>"),
    "qwen2": QWEN_TRAINED,
    "llama3": ('{"name": "add", "parameters": {"a": 3, "b": 4}}<|eot_id|>'
               '{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>'
               "3 + 4 = 7, and it is raining in Paris.<|eot_id|>"),
}
# How each family shows the tool result and the declared schema (never trained).
TOOL_RESULT = {
    "glm4": '<|observation|>\n{"result": 7}<|assistant|>',
    "glm4-0414": '<|observation|>\n{"result": 7}<|assistant|>',
    "glm-z1": '<|observation|>\n{"result": 7}<|assistant|>',
    "glm4-moe": '<|observation|>\n<tool_response>\n{"result": 7}\n</tool_response><|assistant|>',
    "qwen2": '<|im_start|>user\n<tool_response>\n{"result": 7}\n</tool_response><|im_end|>\n',
    "qwen3": '<|im_start|>user\n<tool_response>\n{"result": 7}\n</tool_response><|im_end|>\n',
    "llama3": '<|start_header_id|>ipython<|end_header_id|>\n\n{"result": 7}<|eot_id|>',
}
# a record that ends with a call: the token the template writes after a call ends it
CALL_END = {"glm4": "<|observation|>", "glm4-0414": "<|observation|>", "glm-z1": "<|observation|>",
            "glm4-moe": "<|observation|>"}
END = {"glm4": "<|user|>", "glm4-0414": "<|user|>", "glm-z1": "<|user|>", "glm4-moe": "<|user|>", "qwen2": "<|im_end|>", "qwen3": "<|im_end|>",
       "llama3": "<|eot_id|>"}


def load(tiny_family: Any, family: str) -> tuple[Any, Any]:
    """Tokenizer and layout of a family's tiny model."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_family(family))
    return tok, get_layout(tok)


def trained_text(tok: Any, layout: Any, messages: list[dict], combine: bool) -> str:
    """Every supervised token, decoded."""
    sample = layout.encode(messages, combine=combine)
    return tok.decode([t for t, label in zip(sample.input_ids, sample.labels) if label != IGNORE_INDEX])


def multi_turn(messages: list[dict]) -> bool:
    """More than one user turn (Qwen3 drops the reasoning of replies before the last one)."""
    return sum(m["role"] == "user" for m in messages) > 1


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_varied_fixture_ids_equal_template_and_spans_are_replies(tiny_family, varied_conversations, family):
    tok, layout = load(tiny_family, family)
    assert tok.convert_tokens_to_ids(END[family]) in layout.stop_ids
    for combine in (True, False):
        convs = varied_conversations
        if family == "qwen3" and not combine:  # not prefix-stable: the single-query conversations only
            convs = [m for m in convs if not multi_turn(m) and not any(x.get("metadata") for x in m)]
        assert len(convs) >= 4
        assert verify_layout(layout, tok, convs, combine=combine) == len(convs)
        for messages in convs:
            sample = layout.encode(messages, combine=combine)
            expected = reference_ids(layout, tok, messages)
            assert sample.input_ids[: len(expected)] == expected and len(sample.input_ids) - len(expected) <= 1
            trained = trained_text(tok, layout, messages, combine)
            last = messages[-1]
            if last.get("loss") is not False:
                end = CALL_END.get(family, END[family]) if last.get("metadata") else END[family]
                assert trained.rstrip().endswith(end)
                assert (last["content"] if not last.get("metadata") else "Tokyo") in trained
            elif combine:
                assert trained == ""


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_tools_calls_and_results_in_the_family_form(tiny_family, varied_conversations, family):
    tok, layout = load(tiny_family, family)
    messages = varied_conversations[4]  # two tools declared, two calls, two results, a final answer
    text = tok.decode(layout.encode(messages, combine=True).input_ids)
    assert TOOL_RESULT[family] in text
    assert '"name": "add"' in text and '"description": "查询城市天气"' in text  # the schemas reach the prompt
    if family == "qwen3":  # with combine the last reply is trained in its generation form, think block included
        assert trained_text(tok, layout, messages, True) == (
            "<think>\n\n</think>\n\n3 + 4 = 7, and it is raining in Paris.<|im_end|>\n")
        return
    assert trained_text(tok, layout, messages, combine=False) == TOOL_TRAINED[family]
    schema = text.index("Add two numbers")
    sample = layout.encode(messages, combine=False)
    prompt_tokens = len(tok(text[:schema], add_special_tokens=False)["input_ids"])
    assert all(label == IGNORE_INDEX for label in sample.labels[:prompt_tokens])


def test_generic_form_of_glm_messages():
    from glmtune.layout.messages import Dialect, to_template

    qwen = Dialect(tools_on_message=False, glm_calls=False, generic_calls=True, tool_role="tool",
                   parallel_calls=True)
    llama = Dialect(False, False, True, "tool", parallel_calls=False)
    tools = [{"type": "function", "function": {"name": "f"}}]
    messages = [{"role": "system", "content": "", "tools": tools}, {"role": "user", "content": "q"},
                {"role": "assistant", "content": "Let me check."},
                {"role": "assistant", "metadata": "f", "content": '{"x": 1}'},
                {"role": "assistant", "metadata": "f", "content": '{"x": 2}'},
                {"role": "observation", "content": "r1"}, {"role": "observation", "content": "r2"},
                {"role": "assistant", "content": "done"}]
    shown, top = to_template(messages, qwen)
    assert top == tools and [m["role"] for m in shown] == ["user", "assistant", "tool", "tool", "assistant"]
    assert shown[1]["content"] == "Let me check." and [c["function"]["arguments"] for c in shown[1]["tool_calls"]] \
        == [{"x": 1}, {"x": 2}]
    shown, _ = to_template(messages, llama)  # one call per message where the template takes only one
    assert [len(m.get("tool_calls", [])) for m in shown if m["role"] == "assistant"] == [1, 1, 0]
    with pytest.raises(LayoutError, match="not JSON"):
        to_template([{"role": "assistant", "metadata": "f", "content": "nope"}], qwen)
    with pytest.raises(LayoutError, match="renders no tool definitions"):
        to_template(messages, Dialect(None, False, True, "tool", True))


def test_template_without_tools_refuses_tool_data(tiny_family, varied_conversations):
    tok, _ = load(tiny_family, "qwen2")
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m.role + '\\n' + m.content }}<|im_end|>\n"
                         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    layout = get_layout(tok)
    assert layout.encode(varied_conversations[0], combine=True).num_trained > 0
    with pytest.raises(LayoutError, match="declares tools"):
        layout.encode(varied_conversations[3], combine=True)


# --- reasoning: Qwen3 drops the <think> of replies before the last user query -------------------------------

THINKING = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "<think>\nAdd.\n</think>\n\n4"},
            {"role": "user", "content": "3+3?"}, {"role": "assistant", "content": "<think>\nAdd again.\n</think>\n\n6"}]


def test_reasoning_last_reply_is_trained_with_its_think_block(tiny_family):
    tok, layout = load(tiny_family, "qwen3")
    sample = layout.encode(THINKING, combine=True)
    text = tok.decode(sample.input_ids)
    assert "Add." not in text and "<|im_start|>assistant\n4<|im_end|>" in text  # history without reasoning
    assert trained_text(tok, layout, THINKING, True) == "<think>\nAdd again.\n</think>\n\n6<|im_end|>\n"
    assert verify_layout(layout, tok, [THINKING], combine=True) == 1


def test_reasoning_tool_turns_after_the_last_query_train_every_reply(tiny_family):
    tok, layout = load(tiny_family, "qwen3")
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    messages = [{"role": "system", "content": "", "tools": tools}, {"role": "user", "content": "3+4?"},
                {"role": "assistant", "metadata": "add", "content": '{"a": 3, "b": 4}'},
                {"role": "observation", "content": "7"},
                {"role": "assistant", "content": "<think>\nThe tool says 7.\n</think>\n\n7"}]
    # a call without reasoning renders with an empty think block only while it is last: refused, clearly
    with pytest.raises(LayoutError, match="data.combine: true"):
        layout.encode(messages, combine=False)
    # with its reasoning (inline on the call, as models write it) the call is rendered and trained as written
    messages[2] = {"role": "assistant", "metadata": "add", "content": '<think>\nUse add.\n</think>\n\n{"a": 3, "b": 4}'}
    trained = trained_text(tok, layout, messages, combine=False)
    assert trained.startswith("<think>\nUse add.\n</think>\n\n<tool_call>") and trained.endswith("7<|im_end|>\n")
    assert "The tool says 7." in trained


def test_reasoning_multi_turn_keeps_past_replies_as_the_template_renders_them(tiny_family):
    tok, layout = load(tiny_family, "qwen3")
    sample = layout.encode(THINKING, combine=False)
    text = tok.decode(sample.input_ids)
    assert "Add." not in text and "<|im_start|>assistant\n4<|im_end|>" in text  # as served: reasoning dropped
    # the past reply is context (training it without its reasoning would teach answering without thinking)
    assert trained_text(tok, layout, THINKING, False) == "<think>\nAdd again.\n</think>\n\n6<|im_end|>\n"
    assert verify_layout(layout, tok, [THINKING], combine=False) == 1
    # a past reply the template rewrites although it has no reasoning (Qwen3 gives the last reply an empty
    # think block) is still refused, with the difference shown
    plain = [THINKING[0], {"role": "assistant", "content": "4"}, THINKING[2], THINKING[3]]
    with pytest.raises(LayoutError, match="message 2.*first difference at character"):
        layout.encode(plain, combine=False)


def test_reasoning_is_not_trained_when_switched_off(tiny_family):
    tok, layout = load(tiny_family, "qwen3")
    sample = layout.encode(THINKING, combine=True, train_reasoning=False)
    trained = tok.decode([t for t, label in zip(sample.input_ids, sample.labels) if label != IGNORE_INDEX])
    assert "Add again" not in trained and trained.endswith("6<|im_end|>\n") and "</think>" in trained
    assert "Add again" in tok.decode(sample.input_ids)  # still in the input


def test_a_template_whose_generation_prompt_opens_think_trains_the_reply_as_written(tiny_family):
    from glmtune.tiny.templates_other import chatml_template

    tok, _ = load(tiny_family, "qwen3")
    # DeepSeek-R1 style: the prompt forces "<think>\n", while every rendered reply is the answer alone
    tok.chat_template = chatml_template(None, thinking=False).replace(
        "{% if add_generation_prompt %}<|im_start|>assistant\n",
        "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n")
    layout = get_layout(tok)
    assert layout.thinking.opens_think and layout.thinks
    plain = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello"}]
    assert tok.decode(layout.prompt_ids(plain[:1])).endswith("<|im_start|>assistant\n<think>\n")
    assert trained_text(tok, layout, plain, True) == "</think>\nHello<|im_end|>\n"
    thought = [plain[0], {"role": "assistant", "content": "Hello", "reasoning_content": "Greet back."}]
    assert trained_text(tok, layout, thought, True) == "Greet back.</think>\nHello<|im_end|>\n"
    assert verify_layout(layout, tok, [plain, thought], combine=True) == 2
