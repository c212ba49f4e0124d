"""Thinking templates and GLM-4.5's XML tool calls in the server (scripted replies on tiny glm4-moe and glm-z1)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("openai")

from fastapi.testclient import TestClient  # noqa: E402

from glmtune.serve.app import create_app  # noqa: E402
from glmtune.serve.engine import Engine  # noqa: E402
from tests.serve.test_serve import WEATHER_TOOL, FakeGenerator  # noqa: E402

ASK = [{"role": "user", "content": "Weather in Paris?"}]
XML_CALL = ("<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n"
            "<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>")


@pytest.fixture(scope="module")
def serving(tiny_family: Callable[[str], Path]) -> Iterator[Callable[[str], tuple[TestClient, FakeGenerator]]]:
    """``serving(family)``: a test client on a scripted engine with the family's tokenizer (one per family)."""
    from transformers import AutoTokenizer

    open_clients: dict[str, tuple[TestClient, FakeGenerator]] = {}

    def get(family: str) -> tuple[TestClient, FakeGenerator]:
        if family not in open_clients:
            tok = AutoTokenizer.from_pretrained(tiny_family(family))
            gen = FakeGenerator(tok)
            client = TestClient(create_app(Engine(tok, model_name="m", generate_fn=gen), None))
            open_clients[family] = (client.__enter__(), gen)
        client, gen = open_clients[family]
        gen.replies.clear()
        gen.prompts.clear()
        return client, gen

    yield get
    for client, _ in open_clients.values():
        client.__exit__(None, None, None)


def events(resp: Any) -> list[dict[str, Any]]:
    """The JSON chunks of a streamed reply."""
    lines = [line[len("data: "):] for line in resp.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def deltas(chunks: list[dict[str, Any]], key: str) -> list[str]:
    """The ``key`` parts of the chunks' deltas, in order."""
    return [c["choices"][0]["delta"][key] for c in chunks if c["choices"] and c["choices"][0]["delta"].get(key)]


def test_glm45_xml_syntax_is_derived_and_parsed(tiny_family: Callable[[str], Path]) -> None:
    from transformers import AutoTokenizer

    from glmtune.layout import get_layout
    from glmtune.serve.tool_syntax import derive_syntax, describe_syntax

    tok = AutoTokenizer.from_pretrained(tiny_family("glm4-moe"))
    layout = get_layout(tok)
    syntax = derive_syntax(layout, tok)
    assert syntax is not None and syntax.kind == "xml"
    assert (syntax.prefix, syntax.suffix, syntax.key_open, syntax.value_close) == (
        "<tool_call>", "</tool_call>", "<arg_key>", "</arg_value>")
    assert "<arg_key>key</arg_key>" in describe_syntax(layout, tok)
    names = ["get_weather", "lookup"]
    typed = ('<tool_call>lookup\n<arg_key>n</arg_key>\n<arg_value>21</arg_value>\n<arg_key>ok</arg_key>\n'
             '<arg_value>true</arg_value>\n<arg_key>where</arg_key>\n<arg_value>{"x": [1]}</arg_value>\n'
             '<arg_key>note</arg_key>\n<arg_value>two\nlines</arg_value>\n</tool_call>')
    calls = syntax.parse(XML_CALL + "\n" + typed, names)
    assert calls is not None and [c.function.name for c in calls] == ["get_weather", "lookup"]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris", "days": 3}
    assert json.loads(calls[1].function.arguments) == {"n": 21, "ok": True, "where": {"x": [1]}, "note": "two\nlines"}
    assert syntax.parse("<tool_call>no_args\n</tool_call>", ["no_args"])[0].function.arguments == "{}"
    assert syntax.parse(XML_CALL.replace("get_weather", "other"), names) is None  # not declared
    assert syntax.parse(XML_CALL.replace("<arg_key>days", "junk<arg_key>days"), names) is None
    assert syntax.parse(XML_CALL[:-len("</tool_call>")], names) is None  # unfinished
    assert syntax.classify("<tool_call>", names) == "tool" and syntax.classify("Sure", names) == "text"


def test_reasoning_comes_back_apart_and_streams_before_the_content(serving: Any) -> None:
    client, gen = serving("glm4-moe")
    reply = "\n<think>The user asks.\nLet me answer.</think>\nIt is 21 degrees.<|user|>"
    gen.replies += [reply, reply]
    message = client.post("/v1/chat/completions", json={"messages": ASK}).json()["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "It is 21 degrees.",
                       "reasoning_content": "The user asks.\nLet me answer."}
    chunks = events(client.post("/v1/chat/completions", json={"messages": ASK, "stream": True}))
    kinds = [k for c in chunks for k in ("reasoning_content", "content") if c["choices"][0]["delta"].get(k)]
    assert kinds == sorted(kinds, key=lambda k: k == "content") and "reasoning_content" in kinds
    assert "".join(deltas(chunks, "reasoning_content")) == "The user asks.\nLet me answer."
    assert "".join(deltas(chunks, "content")) == "It is 21 degrees."
    assert gen.prompts[0].endswith("<|user|>\nWeather in Paris?<|assistant|>")


def test_text_before_calls_is_content_and_calls_are_parsed(serving: Any) -> None:
    client, gen = serving("glm4-moe")
    reply = f"\n<think>Two cities.</think>\nChecking both.\n{XML_CALL}\n{XML_CALL.replace('Paris', 'Rome')}<|observation|>"
    gen.replies += [reply, reply]
    body = {"messages": ASK, "tools": [WEATHER_TOOL]}
    choice = client.post("/v1/chat/completions", json=body).json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] == "Checking both."
    assert choice["message"]["reasoning_content"] == "Two cities."
    cities = [json.loads(c["function"]["arguments"])["city"] for c in choice["message"]["tool_calls"]]
    assert cities == ["Paris", "Rome"]
    chunks = events(client.post("/v1/chat/completions", json={**body, "stream": True}))
    assert "".join(deltas(chunks, "content")) == "Checking both."  # the call blocks never leak into the content
    assert len(deltas(chunks, "tool_calls")[0]) == 2
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_enable_thinking_false_reaches_the_template(serving: Any) -> None:
    client, gen = serving("glm4-moe")
    gen.replies.append("\nIt is 21 degrees.<|user|>")
    body = {"messages": ASK, "chat_template_kwargs": {"enable_thinking": False}}
    message = client.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "It is 21 degrees."}
    assert gen.prompts[0].endswith("Weather in Paris?/nothink<|assistant|>\n<think></think>")
    for kwargs, says in (({"thinking": True}, "'thinking' is not supported"), ({"enable_thinking": "no"}, "true or false")):
        resp = client.post("/v1/chat/completions", json={"messages": ASK, "chat_template_kwargs": kwargs})
        assert resp.status_code == 400 and says in resp.json()["error"]["message"]


def test_history_with_reasoning_and_tool_calls_renders(serving: Any) -> None:
    client, gen = serving("glm4-moe")
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    for key in ("reasoning_content", "reasoning"):  # the OpenAI-style field and its short alias
        messages = [*ASK, {"role": "assistant", "content": None, key: "I need the weather.", "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'}]
        assert client.post("/v1/chat/completions", json={"messages": messages, "tools": [WEATHER_TOOL]}).status_code == 200
    expected = ("<|assistant|>\n<think>I need the weather.</think>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n"
                "<arg_value>Paris</arg_value>\n</tool_call><|observation|>\n<tool_response>\n{\"temp\": 21}\n"
                "</tool_response><|assistant|>")
    assert gen.prompts[0].endswith(expected) and gen.prompts[1] == gen.prompts[0]


def test_z1_reply_starts_inside_the_reasoning(serving: Any) -> None:
    client, gen = serving("glm-z1")
    gen.replies += ["Paris is warm in June.</think>\nIt is 21 degrees.<|user|>", "still thinking about it"]
    message = client.post("/v1/chat/completions", json={"messages": ASK}).json()["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "It is 21 degrees.", "reasoning_content": "Paris is warm in June."}
    assert gen.prompts[0].endswith("<|assistant|>\n<think>")
    choice = client.post("/v1/chat/completions", json={"messages": ASK}).json()["choices"][0]  # cut inside the reasoning
    assert choice["finish_reason"] == "length" and choice["message"]["content"] == ""
    assert choice["message"]["reasoning_content"] == "still thinking about it"


def test_z1_tool_call_after_the_reasoning(serving: Any) -> None:
    client, gen = serving("glm-z1")
    gen.replies.append('I need the weather.</think>\nget_weather\n{"city": "Paris"}<|observation|>')
    choice = client.post("/v1/chat/completions", json={"messages": ASK, "tools": [WEATHER_TOOL]}).json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["reasoning_content"] == "I need the weather."
    assert json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
