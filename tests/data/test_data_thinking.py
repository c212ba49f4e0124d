"""Thinking data: reasoning on assistant replies, the non-thinking switch, tool-call arguments, their stats."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from glmtune.data.check import check_file, print_summary
from glmtune.data.conversation import check_messages, normalise_message, split_think
from glmtune.data.read import read_any
from glmtune.data.read_result import read_glm4_jsonl
from glmtune.data.stats import conversation_stats, format_stats, reasoning_stats, reasoning_warning
from glmtune.layout.measure import TokenMeasure

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
USER = {"role": "user", "content": "Weather in Oslo?"}


def jsonl(path: Path, *records: Any) -> Path:
    """Write records as JSONL, one per line."""
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def codes(result: Any) -> list[tuple[str, str]]:
    """(source, code) of every problem, in order."""
    return [(p.source, p.code) for p in result.problems]


def reply(question: str = USER["content"], **fields: Any) -> dict[str, Any]:
    """A user turn asking ``question`` and one assistant turn with ``fields``."""
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", **fields}]}


# --- reasoning on assistant messages ---------------------------------------------------------------------

def test_split_think_follows_the_templates() -> None:
    assert split_think("<think>\n plan \n</think>\n\nAnswer") == ("plan", "Answer")
    assert split_think("  <think>plan</think>Answer") == ("plan", "Answer")
    assert split_think("plan</think>\nAnswer") == ("plan", "Answer")  # GLM-Z1: the prompt opened <think>
    assert split_think("<think>a</think>b</think>\nc") == ("a</think>b", "c")  # the last </think> ends it
    assert split_think("<think>never closed") is None and split_think("plain") is None


@pytest.mark.parametrize("fmt", ["openai", "sharegpt", "glm4"])
def test_reasoning_from_the_field_inline_or_both(fmt: str, tmp_path: Path) -> None:
    turns = [
        {"content": "It is 5C.", "reasoning_content": "  Look it up.\n"},
        {"content": "It is 5C.", "reasoning": "Look it up."},
        {"content": "<think>\nLook it up.\n</think>\n\nIt is 5C."},
        {"content": "<think></think>\nIt is 5C."},
        {"content": "<think>Look it up.</think>It is 5C.", "reasoning_content": "Other."},
        {"content": "It is 5C.", "reasoning_content": "A.", "reasoning": "B."},
        {"content": "It is 5C.", "reasoning_content": ["not", "text"]},
    ]
    records = [_as(fmt, turn) for turn in turns]
    records.append(_as(fmt, {"content": "It is 5C."}, user_extra={"reasoning_content": "no"}))
    path = jsonl(tmp_path / f"{fmt}.jsonl", *records)
    result = read_any(path, format=fmt)
    with_reasoning = {"role": "assistant", "content": "It is 5C.", "reasoning_content": "Look it up."}
    assert [c.messages[-1] for c in result.conversations] == [with_reasoning] * 3 + [
        {"role": "assistant", "content": "It is 5C."}]
    assert codes(result) == [(f"{path}:5", "reasoning_twice"), (f"{path}:6", "reasoning_twice"),
                             (f"{path}:7", "bad_reasoning"), (f"{path}:8", "bad_reasoning")]
    assert "inline <think>...</think>" in result.problems[0].reason
    assert "only assistant messages carry reasoning" in result.problems[3].reason


def _as(fmt: str, turn: dict[str, Any], user_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    user = {**USER, **(user_extra or {})}
    if fmt == "sharegpt":
        rest = {k: v for k, v in turn.items() if k != "content"}
        return {"conversations": [{"from": "human", "value": user["content"], **{k: v for k, v in user.items()
                                                                               if k not in ("role", "content")}},
                                  {"from": "gpt", "value": turn["content"], **rest}]}
    return {"messages": [user, {"role": "assistant", **turn}]}


def test_a_reply_with_only_reasoning_is_still_empty(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "o.jsonl", reply(content="<think>hmm</think>"), reply(content="", reasoning="hmm"))
    result = read_any(path)
    assert codes(result) == [(f"{path}:1", "empty_reply"), (f"{path}:2", "empty_reply")]
    assert "a thinking reply still needs an answer" in result.problems[0].reason


def test_reasoning_before_a_tool_call_goes_onto_the_call(tmp_path: Path) -> None:
    call = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
    openai = {"messages": [USER, {"role": "assistant", "content": None, "reasoning_content": "Need the tool.",
                                  "tool_calls": [call]},
                           {"role": "tool", "content": "5C"},
                           {"role": "assistant", "content": "<think>Got it.</think>It is 5C."}],
              "tools": [WEATHER]}
    sharegpt = {"conversations": [
        {"from": "human", "value": USER["content"]}, {"from": "gpt", "value": "<think>Need the tool.</think>"},
        {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "Oslo"}})},
        {"from": "observation", "value": "5C"}, {"from": "gpt", "value": "It is 5C.", "reasoning": "Got it."}],
        "tools": [WEATHER]}
    for record in (openai, sharegpt):
        result = read_any(jsonl(tmp_path / "x.jsonl", record))
        assert result.problems == []
        assert result.conversations[0].messages[2:] == [
            {"role": "assistant", "content": '{"city": "Oslo"}', "reasoning_content": "Need the tool.",
             "metadata": "get_weather"},
            {"role": "observation", "content": "5C"},
            {"role": "assistant", "content": "It is 5C.", "reasoning_content": "Got it."}]


def test_normalised_messages_recheck_clean_and_glm4_readers_agree(tmp_path: Path) -> None:
    record = {"messages": [USER, {"role": "assistant", "content": "<think>r</think>\nA"}], "id": 3}
    path = jsonl(tmp_path / "g.jsonl", record)
    for result in (read_any(path), read_glm4_jsonl(path)):
        messages = result.conversations[0].messages
        assert messages[1] == {"role": "assistant", "content": "A", "reasoning_content": "r"}
        assert check_messages(messages) == [] and [normalise_message(m) for m in messages] == messages
        assert result.conversations[0].extra == {"id": 3}


# --- the non-thinking switch -----------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["openai", "glm4", "sharegpt", "alpaca"])
def test_enable_thinking_switch(fmt: str, tmp_path: Path) -> None:
    def record(**top: Any) -> dict[str, Any]:
        if fmt == "alpaca":
            return {"instruction": "q", "output": "a", **top}
        if fmt == "sharegpt":
            return {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], **top}
        return {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], **top}

    path = jsonl(tmp_path / "t.jsonl",
                 record(enable_thinking=False, id=1),
                 record(chat_template_kwargs={"enable_thinking": False}),
                 record(chat_template_kwargs={"enable_thinking": True, "other": 1}),
                 record(),
                 record(enable_thinking="false"),
                 record(chat_template_kwargs={"enable_thinking": 0}),
                 record(enable_thinking=True, chat_template_kwargs={"enable_thinking": False}))
    result = read_any(path, format=fmt)
    assert [c.extra for c in result.conversations] == [
        {"enable_thinking": False, "id": 1}, {"enable_thinking": False},
        {"enable_thinking": True, "chat_template_kwargs": {"other": 1}}, {}]
    assert codes(result) == [(f"{path}:5", "bad_field"), (f"{path}:6", "bad_field"), (f"{path}:7", "bad_field")]
    reasons = [p.reason for p in result.problems]
    assert reasons[0] == "'enable_thinking' must be true or false, got a string"
    assert "'chat_template_kwargs.enable_thinking'" in reasons[1] and "disagree" in reasons[2]


# --- tool-call arguments ---------------------------------------------------------------------------------

def _call_record(arguments: Any) -> dict[str, Any]:
    return {"messages": [USER, {"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
        {"type": "function", "function": {"name": "get_weather", "arguments": arguments}}]},
        {"role": "tool", "content": "5C"}, {"role": "tool", "content": "6C"},
        {"role": "assistant", "content": "5C and 6C."}], "tools": [WEATHER]}


def test_tool_call_arguments_object_or_json_string(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "o.jsonl", _call_record({"city": "Bergen"}), _call_record('{"city": "Bergen"}'),
                 _call_record(None), _call_record("  "),
                 _call_record("city=Bergen"), _call_record('["Bergen"]'), _call_record(["Bergen"]),
                 _call_record('"Bergen"'))
    result = read_any(path)
    first, second, empty, blank = (c.messages for c in result.conversations)
    assert first == second
    assert first[3] == {"role": "assistant", "metadata": "get_weather", "content": '{"city": "Bergen"}'}
    assert empty[3]["content"] == blank[3]["content"] == "{}"
    assert codes(result) == [(f"{path}:{n}", "bad_tool_arguments") for n in (5, 6, 7, 8)]
    assert all(p.reason.startswith("message 2 tool call 2 arguments ") for p in result.problems)
    assert "not JSON" in result.problems[0].reason and "got a list" in result.problems[1].reason


def test_sharegpt_and_glm4_call_arguments(tmp_path: Path) -> None:
    def sharegpt(arguments: Any) -> dict[str, Any]:
        value = json.dumps({"name": "get_weather", "arguments": arguments})
        return {"conversations": [{"from": "human", "value": "w?"}, {"from": "function_call", "value": value},
                                  {"from": "observation", "value": "5C"}, {"from": "gpt", "value": "5C."}]}

    path = jsonl(tmp_path / "s.jsonl", sharegpt({"city": "Oslo"}), sharegpt("{bad"), sharegpt([1]))
    assert codes(read_any(path)) == [(f"{path}:2", "bad_tool_arguments"), (f"{path}:3", "bad_tool_arguments")]

    def glm4(content: str) -> dict[str, Any]:
        return {"messages": [USER, {"role": "assistant", "metadata": "get_weather", "content": content},
                             {"role": "observation", "content": "5C"}, {"role": "assistant", "content": "5C."}]}

    path = jsonl(tmp_path / "g.jsonl", glm4('{"city": "Oslo"}'), glm4("city=Oslo"), glm4("[1, 2]"))
    for result in (read_any(path), read_glm4_jsonl(path)):
        assert codes(result) == [(f"{path}:2", "bad_tool_arguments"), (f"{path}:3", "bad_tool_arguments")]
        assert "message 2 calls 'get_weather'" in result.problems[0].reason


# --- statistics and data check ---------------------------------------------------------------------------

def test_reasoning_stats() -> None:
    convs = [
        [USER, {"role": "assistant", "content": "a", "reasoning_content": "abcd"}],
        [USER, {"role": "assistant", "content": "b", "reasoning_content": "ab"},
         {"role": "user", "content": "more"}, {"role": "assistant", "content": "c"}],
        [USER, {"role": "assistant", "content": "d"}],
    ]
    extras = [{}, {"enable_thinking": False}, {"enable_thinking": True}]
    stats = reasoning_stats(convs, extras)
    assert stats == {"replies": 4, "with_reasoning": 2, "share": 0.5, "length": {"mean": 3.0, "p50": 4, "max": 4},
                     "non_thinking_conversations": 1}
    assert reasoning_stats(convs, extras, measure=lambda text: 1)["length"]["max"] == 1
    full = conversation_stats(convs, [(0, 0)] * 3, "characters", extras=extras)
    assert full["reasoning"] == stats
    assert ("reasoning: 2 of 4 assistant replies (50.0%), length (characters) mean 3.0, max 4; "
            "non-thinking conversations: 1") in format_stats(full)
    plain = conversation_stats([convs[2]], [(0, 0)], "characters")
    assert not any(line.startswith("reasoning") for line in format_stats(plain))


def test_reasoning_warning_needs_reasoning_and_a_template_without_thinking() -> None:
    stats = {"reasoning": {"with_reasoning": 12}}
    warning = reasoning_warning("data/x.jsonl", stats, SimpleNamespace())
    assert warning == ("data/x.jsonl: 12 replies carry reasoning, but this model's chat template has no "
                       "thinking: the reasoning is dropped and only the answer is trained")
    assert reasoning_warning("x", stats, SimpleNamespace(thinks=True)) is None
    assert reasoning_warning("x", stats, None) is None
    assert reasoning_warning("x", {"reasoning": {"with_reasoning": 0}}, SimpleNamespace()) is None


def _thinking_file(tmp_path: Path) -> Path:
    return jsonl(tmp_path / "think.jsonl",
                 reply("2 + 2?", content="<think>Add them.</think>\n4", reasoning_content=None),
                 reply("Hello!", content="Hi there.", reasoning_content="A greeting."),
                 {**reply(content="Plain."), "enable_thinking": False},
                 reply("x?", content="<think>x</think>y", reasoning_content="z"))


def test_data_check_warns_when_the_template_drops_reasoning(tmp_path: Path, tiny_model: Path) -> None:
    from rich.console import Console

    path = _thinking_file(tmp_path)
    result = check_file(path, measure=TokenMeasure.from_model(str(tiny_model)))
    assert codes(result) == [(f"{path}:4", "reasoning_twice")]
    reasoning = result.stats["reasoning"]
    assert (reasoning["replies"], reasoning["with_reasoning"], reasoning["non_thinking_conversations"]) == (3, 2, 1)
    assert result.stats["length_unit"] == "tokens" and reasoning["length"]["max"] > 0
    assert result.notes == [f"{path}: 2 replies carry reasoning, but this model's chat template has no thinking: "
                            "the reasoning is dropped and only the answer is trained"]
    buffer = io.StringIO()
    print_summary(result, Console(file=buffer, width=300, highlight=False))
    text = buffer.getvalue()
    assert text.count("2 replies carry reasoning") == 1 and "reasoning: 2 of 3 assistant replies" in text
    assert result.as_dict()["notes"] == result.notes


def test_data_check_keeps_reasoning_and_the_switch_in_the_fixed_output(tmp_path: Path) -> None:
    path, fix = _thinking_file(tmp_path), tmp_path / "fixed.jsonl"
    result = check_file(path, fix=str(fix))
    assert result.notes == []  # no model: the template is unknown, so nothing is said about it
    assert result.stats["reasoning"]["length"] == {"mean": 10.0, "p50": 11, "max": 11}  # characters
    rows = [json.loads(line) for line in fix.read_text(encoding="utf-8").splitlines()]
    assert rows[0]["messages"][1] == {"role": "assistant", "content": "4", "reasoning_content": "Add them."}
    assert rows[2] == {"messages": [USER, {"role": "assistant", "content": "Plain."}], "enable_thinking": False}
    again = read_any(fix)
    assert again.problems == [] and [c.messages for c in again.conversations] == [c.messages for c in result.kept]
    assert [c.extra for c in again.conversations] == [{}, {}, {"enable_thinking": False}]


def test_data_check_reports_bad_tool_arguments_at_their_line(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "o.jsonl", _call_record({"city": "Bergen"}), _call_record("city=Bergen"))
    result = check_file(path)
    assert codes(result) == [(f"{path}:2", "bad_tool_arguments")]
    assert [row["code"] for row in result.quarantined] == ["bad_tool_arguments"]
