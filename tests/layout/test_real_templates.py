"""The layout proven against the real chat templates of the current GLM generation (in ../shared, never copied).

For glm-4-9b-chat, GLM-4-9B-0414, GLM-Z1-9B-0414, GLM-4.5 and GLM-4.6: the layout is derived from the template's
behaviour (never its name), ids equal the template's own rendering token for token, and the trained spans are
exactly the replies (reasoning where the template keeps it) plus the token that ends them, written out by hand.
glmtune's tiny templates render like the real ones on the same fixture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from glmtune.layout import get_layout
from glmtune.layout.verify import reference_ids, trained_spans, verify_layout
from glmtune.tiny.families import FAMILIES
from tests.layout.glm_fixture import CONVERSATIONS

TEMPLATES = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "templates"
pytestmark = pytest.mark.skipif(not TEMPLATES.is_dir(), reason=f"the reference templates are not at {TEMPLATES}")

# real template -> (the generation its behaviour says, the tiny family whose tokenizer and template match it)
REAL = {
    "glm-4-9b-chat.jinja": ("glm4", "glm4"),
    "GLM-4-9B-0414.jinja": ("glm4-0414", "glm4-0414"),
    "GLM-Z1-9B-0414.jinja": ("glm-z1", "glm-z1"),
    "GLM-4.5.jinja": ("glm4-moe", "glm4-moe"),
    "GLM-4.6.jinja": ("glm4-moe", "glm4-moe"),
}
ANSWERS = {"single": "It is 4.", "multi_turn": "Green.", "thinking": "Yes, 7 is prime.",
           "two_calls_two_results": "25 degrees, and it is 10:00."}
WEATHER_CALL = 'get_weather{sp}\n{{"city": "Paris", "days": 3, "units": {{"temp": "C"}}}}<|observation|>'
MOE_EMPTY = "\n<think></think>\n"
# Every trained span, by generation and conversation, written from each template's format by hand.
EXPECTED: dict[str, dict[str, list[str]]] = {
    "glm4": {
        "single": ["\nIt is 4.<|user|>"],
        "multi_turn": ["\nBlue.<|user|>", "\nGreen.<|user|>"],
        "tools_one_call": [WEATHER_CALL.format(sp=""), "\nIt is 21 degrees in Paris.<|user|>"],
        "two_calls_two_results": ['get_weather\n{"city": "Rome"}<|assistant|>get_time\n{}<|observation|>',
                                  "\n25 degrees, and it is 10:00.<|user|>"],
        "thinking": ["\nYes, 7 is prime.<|user|>"],  # no thinking in the template: the reasoning is dropped
    },
    "glm4-0414": {
        "single": ["\nIt is 4.<|user|>"],
        "tools_one_call": [WEATHER_CALL.format(sp=" "), "\nIt is 21 degrees in Paris.<|user|>"],
        "two_calls_two_results": ['get_weather \n{"city": "Rome"}<|assistant|>get_time \n{}<|observation|>',
                                  "\n25 degrees, and it is 10:00.<|user|>"],
        "thinking": ["\nYes, 7 is prime.<|user|>"],
    },
    "glm-z1": {  # the prompt opens <think>: the last reply as written after it; earlier replies are context
        "single": ["</think>\nIt is 4.<|user|>"],
        "multi_turn": ["</think>\nGreen.<|user|>"],
        "two_calls_two_results": ["</think>\n25 degrees, and it is 10:00.<|user|>"],
        "thinking": ["7 has no divisors but 1 and 7.</think>\nYes, 7 is prime.<|user|>"],
        "thinking_multi_turn": ["11 has no divisor below its root.</think>\nYes, 11 is prime.<|user|>"],
    },
    "glm4-moe": {
        "single": [MOE_EMPTY + "It is 4.<|user|>"],
        "multi_turn": [MOE_EMPTY + "Blue.<|user|>", MOE_EMPTY + "Green.<|user|>"],
        "tools_one_call": [
            MOE_EMPTY + "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n"
            "<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n<arg_key>units</arg_key>\n"
            '<arg_value>{"temp": "C"}</arg_value>\n</tool_call><|observation|>',
            MOE_EMPTY + "It is 21 degrees in Paris.<|user|>"],
        "two_calls_two_results": [  # two calls in one turn, two results under one <|observation|>
            MOE_EMPTY + "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Rome</arg_value>\n"
            "</tool_call>\n<tool_call>get_time\n</tool_call><|observation|>",
            MOE_EMPTY + "25 degrees, and it is 10:00.<|user|>"],
        "thinking": ["\n<think>7 has no divisors but 1 and 7.</think>\nYes, 7 is prime.<|user|>"],
        # the first reply's reasoning is dropped once a later user turn follows: context, not trained
        "thinking_multi_turn": ["\n<think>11 has no divisor below its root.</think>\nYes, 11 is prime.<|user|>"],
        "thinking_then_call": [
            "\n<think>I need the weather first.</think>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n"
            "<arg_value>Oslo</arg_value>\n</tool_call><|observation|>",
            "\n<think>Rain is forecast.</think>\nYes, take one.<|user|>"],
        "nothink": ["\nHi!<|user|>"],  # enable_thinking=False: the prompt already holds <think></think>
    },
}


def real_tokenizer(tiny_family: Any, name: str) -> Any:
    """The matching tiny family's tokenizer carrying the real template."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_family(REAL[name][1]))
    tok.chat_template = (TEMPLATES / name).read_text(encoding="utf-8")
    return tok


def spans(tok: Any, layout: Any, messages: list[dict], combine: bool = False) -> list[str]:
    """Each run of trained tokens, decoded."""
    sample = layout.encode(messages, combine=combine)
    return [tok.decode(span) for span in trained_spans(sample.input_ids, sample.labels)]


@pytest.mark.parametrize("name", sorted(REAL))
def test_layout_is_derived_and_ids_equal_the_real_template(tiny_family, name):
    tok = real_tokenizer(tiny_family, name)
    layout = get_layout(tok)
    assert layout.name == REAL[name][0]
    assert sorted(tok.convert_ids_to_tokens(layout.stop_ids)) == sorted(["<|endoftext|>", "<|user|>", "<|observation|>"])
    usable = {k: m for k, m in CONVERSATIONS.items()}
    for combine in (False, True):
        assert verify_layout(layout, tok, list(usable.values()), combine=combine) == len(usable)
        for messages in usable.values():
            sample = layout.encode(messages, combine=combine)
            expected = reference_ids(layout, tok, messages)
            assert sample.input_ids[:-1] == expected  # plus the one token the template writes next


@pytest.mark.parametrize("name", sorted(REAL))
def test_trained_spans_are_exactly_the_replies(tiny_family, name):
    tok = real_tokenizer(tiny_family, name)
    layout = get_layout(tok)
    expected = EXPECTED[layout.name]
    for key, want in expected.items():
        assert spans(tok, layout, CONVERSATIONS[key]) == want, key
    for key, answer in ANSWERS.items():  # combine: only the last reply
        got = spans(tok, layout, CONVERSATIONS[key], combine=True)
        assert len(got) == 1 and got[0].endswith(answer + "<|user|>"), (key, got)


@pytest.mark.parametrize("name", sorted(REAL))
def test_tiny_family_template_renders_like_the_real_one(tiny_family, name):
    from transformers import AutoTokenizer

    real = real_tokenizer(tiny_family, name)
    tiny = AutoTokenizer.from_pretrained(tiny_family(REAL[name][1]))
    assert tiny.chat_template == FAMILIES[REAL[name][1]].template
    shown_layout = get_layout(real)
    for key, messages in CONVERSATIONS.items():
        shown, tools = shown_layout.to_template(messages)
        for prompt in (False, True):
            kwargs: dict[str, Any] = {"tools": tools} if tools else {}
            if any(m.get("enable_thinking") is False for m in messages) and shown_layout.thinking.nothink_switch:
                kwargs["enable_thinking"] = False
            mine = tiny.apply_chat_template(shown, tokenize=False, add_generation_prompt=prompt, **kwargs)
            theirs = real.apply_chat_template(shown, tokenize=False, add_generation_prompt=prompt, **kwargs)
            assert mine == theirs, (key, prompt)


def test_a_glm_template_not_in_shared_gets_its_layout_from_behaviour(tiny_family):
    tok = real_tokenizer(tiny_family, "GLM-4.5.jinja")
    tok.chat_template = tok.chat_template.replace("You may call one or more functions", "Call functions").replace(
        "# Tools", "# Available tools")
    layout = get_layout(tok)
    assert layout.name == "glm4-moe"
    assert spans(tok, layout, CONVERSATIONS["thinking"]) == EXPECTED["glm4-moe"]["thinking"]


def test_z1_trains_a_last_call_as_written_after_the_think_block(tiny_family):
    tok = real_tokenizer(tiny_family, "GLM-Z1-9B-0414.jinja")
    layout = get_layout(tok)
    ends_with_call = CONVERSATIONS["tools_one_call"][:3]
    assert spans(tok, layout, ends_with_call, combine=True) == [
        '</think>\nget_weather\n{"city": "Paris", "days": 3, "units": {"temp": "C"}}<|observation|>']
    thought = CONVERSATIONS["thinking_then_call"][:3]
    assert spans(tok, layout, thought, combine=True) == [
        'I need the weather first.</think>\nget_weather\n{"city": "Oslo"}<|observation|>']


def test_reasoning_can_be_left_untrained(tiny_family):
    tok = real_tokenizer(tiny_family, "GLM-4.5.jinja")
    layout = get_layout(tok)
    sample = layout.encode(CONVERSATIONS["thinking"], combine=False, train_reasoning=False)
    trained = "".join(tok.decode(s) for s in trained_spans(sample.input_ids, sample.labels))
    assert "divisors" not in trained and "Yes, 7 is prime.<|user|>" in trained
    assert "divisors" in tok.decode(sample.input_ids)
