"""glmtune's GLM-4.5 template renders exactly like GLM-4.5's own on a varied fixture.

The reference copy lives outside the repository (``<repo>/../shared/reference/templates/GLM-4.5.jinja``); without
it the comparison is skipped and only the hand-written expectations run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from glmtune.tiny.templates_glm45 import glm45_chat_template

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "templates" / "GLM-4.5.jinja"

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "天气 in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}
ADD = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
CALLS = [
    {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "北京", "days": 3}}},
    {"function": {"name": "add", "arguments": {"a": 1.5, "b": [1, 2], "opts": {"exact": True, "note": None}}}},
]
SYSTEM = {"role": "system", "content": "You are terse."}

CONVERSATIONS: dict[str, list[dict[str, Any]]] = {
    "single": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
    "multi_turn_system": [
        SYSTEM, {"role": "user", "content": "你好"}, {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "  4\n"},
    ],
    "reasoning_field": [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4", "reasoning_content": "\nAdd them.\n"},
        {"role": "user", "content": "3+3?"},
        {"role": "assistant", "content": "6", "reasoning_content": "Add again."},
    ],
    "inline_think": [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "<think>\nOld thought.\n</think>\n\n4"},
        {"role": "user", "content": "3+3?"},
        {"role": "assistant", "content": "<think>\nNew thought.\n</think>\n\n6"},
    ],
    "empty_reasoning": [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello", "reasoning_content": ""},
        {"role": "assistant", "content": "", "reasoning_content": "   "},
    ],
    "tool_calls_and_results": [
        SYSTEM, {"role": "user", "content": "Weather in Beijing, and 1.5 + 2?"},
        {"role": "assistant", "content": "Let me check.", "reasoning_content": "Two tools.", "tool_calls": CALLS},
        {"role": "tool", "content": "晴, 25°C"}, {"role": "tool", "content": '{"result": 3.5}'},
        {"role": "assistant", "content": "Sunny, and 3.5.", "reasoning_content": "Both came back."},
        {"role": "user", "content": "Thanks"},
        {"role": "assistant", "content": "", "tool_calls": [CALLS[0]]},
        {"role": "tool", "content": "雨"},
    ],
    "call_without_text": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]},
        {"role": "tool", "content": "rain"}, {"role": "assistant", "content": "Rain."},
    ],
    "list_contents": [
        {"role": "system", "content": [{"type": "text", "text": "Be "}, "brief."]},
        {"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "image"}, " there"]},
        {"role": "assistant", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "tool", "content": [{"output": "first"}, "second"]},
    ],
    "user_says_nothink": [{"role": "user", "content": "Quick: 1+1? /nothink"}],
    "odd_roles": [{"role": "observation", "content": "ignored"}, {"role": "user", "content": "Hi"}],
    "results_first": [
        {"role": "tool", "content": "a"}, {"role": "tool", "content": [{"output": "b"}]},
        {"role": "tool", "content": "c"}, {"role": "user", "content": 42}, {"role": "assistant", "content": "ok"},
    ],
}
TOOLS = {"none": None, "two": [WEATHER, ADD]}
OPTIONS = [{}, {"enable_thinking": False}, {"enable_thinking": True}]


def render(template: str, messages: list[dict], tools: Any = None, generation: bool = False, **kwargs: Any) -> str:
    """Render through transformers' own chat-template machinery."""
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template([messages], tools=tools, chat_template=template,
                                        add_generation_prompt=generation, **kwargs)
    return rendered[0]


def cases() -> list[Any]:
    """Every conversation with and without tools, each thinking option, with and without a generation prompt."""
    return [pytest.param(name, tools, options, generation, id=f"{name}-{tools}-{options}-{generation}")
            for name in CONVERSATIONS for tools in TOOLS for options in map(str, range(len(OPTIONS)))
            for generation in (False, True)]


@pytest.mark.skipif(not REFERENCE.is_file(), reason=f"reference template not found at {REFERENCE}")
@pytest.mark.parametrize(("name", "tools", "options", "generation"), cases())
def test_renders_exactly_like_glm45(name: str, tools: str, options: str, generation: bool) -> None:
    reference = REFERENCE.read_text(encoding="utf-8")
    args = (CONVERSATIONS[name], TOOLS[tools], generation)
    kwargs = OPTIONS[int(options)]
    assert render(glm45_chat_template(), *args, **kwargs) == render(reference, *args, **kwargs)


@pytest.mark.skipif(not REFERENCE.is_file(), reason=f"reference template not found at {REFERENCE}")
def test_string_arguments_fail_like_glm45() -> None:
    from jinja2.exceptions import UndefinedError

    bad = [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": '{"a": 1}'}}]}]
    for template in (glm45_chat_template(), REFERENCE.read_text(encoding="utf-8")):
        with pytest.raises(UndefinedError, match="items"):
            render(template, bad)


def test_hand_checked_render() -> None:
    """The shapes spelled out, so the format is pinned even where the reference copy is absent."""
    messages = CONVERSATIONS["tool_calls_and_results"][1:6]
    text = render(glm45_chat_template(), messages, tools=[ADD])
    assert text.startswith("[gMASK]<sop><|system|>\n# Tools\n\nYou may call one or more functions")
    assert '<tools>\n{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}\n</tools>' in text
    assert text.endswith(
        "</tool_call><|user|>\nWeather in Beijing, and 1.5 + 2?<|assistant|>\n<think>Two tools.</think>\n"
        "Let me check.\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>北京</arg_value>\n"
        "<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>\n<tool_call>add\n<arg_key>a</arg_key>\n"
        "<arg_value>1.5</arg_value>\n<arg_key>b</arg_key>\n<arg_value>[1, 2]</arg_value>\n<arg_key>opts</arg_key>\n"
        '<arg_value>{"exact": true, "note": null}</arg_value>\n</tool_call>'
        "<|observation|>\n<tool_response>\n晴, 25°C\n</tool_response>\n<tool_response>\n"
        '{"result": 3.5}\n</tool_response><|assistant|>\n<think>Both came back.</think>\nSunny, and 3.5.'
    )
    past = render(glm45_chat_template(), CONVERSATIONS["reasoning_field"], generation=True, enable_thinking=False)
    assert past == ("[gMASK]<sop><|user|>\n2+2?/nothink<|assistant|>\n<think></think>\n4<|user|>\n3+3?/nothink"
                    "<|assistant|>\n<think>Add again.</think>\n6<|assistant|>\n<think></think>")
