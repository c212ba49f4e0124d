"""Readers for alpaca / sharegpt / openai / glm4 records in jsonl, json, csv and parquet files."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from glmtune.data.conversation import check_messages
from glmtune.data.placeholders import fill_placeholders, find_placeholders
from glmtune.data.read import detect_format, read_any
from glmtune.data.read_result import read_glm4_jsonl
from glmtune.errors import DataError

TOOL = {"name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
GLM_TOOL = {"type": "function", "function": TOOL}


def jsonl(path: Path, *records: Any) -> Path:
    """Write records (str lines are written as they are) as JSONL."""
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def codes(result) -> list[tuple[str, str]]:
    """(source, code) of every problem, in order."""
    return [(p.source, p.code) for p in result.problems]


def test_alpaca_system_history_and_input(tmp_path):
    path = jsonl(tmp_path / "a.jsonl",
                 {"instruction": "Translate", "input": "bonjour", "output": "hello", "system": "Be brief.",
                  "history": [["hi", "Hi!"], ["who?", "A bot."]], "id": 7},
                 {"instruction": "Say hi", "input": "", "output": "hi"})
    result = read_any(path)
    assert result.format == "alpaca" and result.problems == [] and result.total == 2
    first, second = result.conversations
    assert first.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": "who?"}, {"role": "assistant", "content": "A bot."},
        {"role": "user", "content": "Translate\nbonjour"}, {"role": "assistant", "content": "hello"},
    ]
    assert first.source == f"{path}:1" and first.extra == {"id": 7}
    assert second.messages == [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi"}]


def test_alpaca_bad_records(tmp_path):
    path = jsonl(tmp_path / "a.jsonl",
                 {"instruction": "q", "output": "a"},
                 {"instruction": "no answer"},
                 {"instruction": "q", "output": "a", "history": [["only one"]]},
                 {"instruction": "q", "output": 42},
                 {"instruction": "q", "output": "  "})
    result = read_any(path)
    assert codes(result) == [(f"{path}:2", "missing_field"), (f"{path}:3", "bad_field"),
                             (f"{path}:4", "bad_field"), (f"{path}:5", "empty_reply")]
    assert result.total == 5 and len(result.conversations) == 1
    assert json.loads(result.rejected_records[0]["raw"]) == {"instruction": "no answer"}


def test_sharegpt_tool_calls(tmp_path):
    record = {
        "system": "You help.",
        "tools": json.dumps([TOOL]),
        "conversations": [
            {"from": "human", "value": "Weather in 北京?"},
            {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "北京"}})},
            {"from": "observation", "value": '{"temp": 20}'},
            {"from": "gpt", "value": "20 degrees."},
            {"from": "human", "value": "And Paris?"},
            {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": '{"city":"Paris"}'})},
            {"from": "observation", "value": '{"temp": 15}'},
            {"from": "gpt", "value": "15 degrees."},
        ],
    }
    result = read_any(jsonl(tmp_path / "s.jsonl", record))
    assert result.format == "sharegpt" and result.problems == []
    msgs = result.conversations[0].messages
    assert msgs[0] == {"role": "system", "content": "You help.", "tools": [GLM_TOOL]}
    assert msgs[2] == {"role": "assistant", "metadata": "get_weather", "content": '{"city": "北京"}'}
    assert msgs[3] == {"role": "observation", "content": '{"temp": 20}'}
    assert msgs[6] == {"role": "assistant", "metadata": "get_weather", "content": '{"city": "Paris"}'}
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "observation", "assistant",
                                         "user", "assistant", "observation", "assistant"]


def test_sharegpt_role_content_variant_and_tools_without_system(tmp_path):
    record = {"messages": [{"role": "user", "content": "w?"},
                           {"role": "function_call", "content": '{"name": "get_weather", "arguments": {}}'},
                           {"role": "observation", "content": "sunny"},
                           {"role": "assistant", "content": "Sunny."}],
              "tools": [GLM_TOOL]}
    assert detect_format(record) == "sharegpt"
    result = read_any(jsonl(tmp_path / "s.jsonl", record))
    msgs = result.conversations[0].messages
    assert msgs[0] == {"role": "system", "content": "", "tools": [GLM_TOOL]}
    assert msgs[2] == {"role": "assistant", "metadata": "get_weather", "content": "{}"}


def test_sharegpt_bad_records(tmp_path):
    ok = {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}
    path = jsonl(tmp_path / "s.jsonl", ok,
                 {"conversations": [{"from": "human", "value": "a"}, {"from": "bot", "value": "b"}]},
                 {"conversations": [{"from": "human", "value": "a"}, {"from": "function_call", "value": "f(x)"}]},
                 {"conversations": [{"from": "human", "value": "a"}], "tools": "[not json"},
                 {"conversations": [{"from": "human", "value": "a"}]})
    result = read_any(path)
    assert codes(result) == [(f"{path}:2", "unknown_role"), (f"{path}:3", "bad_tool_call"),
                             (f"{path}:4", "bad_tools"), (f"{path}:5", "no_reply")]
    assert "'bot'" in result.problems[0].reason
    assert len(read_any(path, need_reply=False).conversations) == 2


def test_openai_tool_calls(tmp_path):
    record = {
        "messages": [
            {"role": "developer", "content": "Use tools."},
            {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo and Rome?"}]},
            {"role": "assistant", "content": "Checking both.", "tool_calls": [
                {"id": "1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
                {"id": "2", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}},
            ]},
            {"role": "tool", "tool_call_id": "1", "content": "5C"},
            {"role": "tool", "tool_call_id": "2", "content": "25C"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "content": "?"},
            {"role": "assistant", "content": "Oslo 5C, Rome 25C.", "weight": 0},
            {"role": "user", "content": "thanks"},
            {"role": "assistant", "content": "You're welcome."},
        ],
        "tools": [GLM_TOOL],
    }
    assert detect_format(record) == "openai"
    result = read_any(jsonl(tmp_path / "o.jsonl", record))
    assert result.format == "openai" and result.problems == []
    msgs = result.conversations[0].messages
    assert msgs[:7] == [
        {"role": "system", "content": "Use tools.", "tools": [GLM_TOOL]},
        {"role": "user", "content": "Weather in Oslo and Rome?"},
        {"role": "assistant", "content": "Checking both."},
        {"role": "assistant", "metadata": "get_weather", "content": '{"city": "Oslo"}'},
        {"role": "assistant", "metadata": "get_weather", "content": '{"city": "Rome"}'},
        {"role": "observation", "content": "5C"},
        {"role": "observation", "content": "25C"},
    ]
    assert msgs[7] == {"role": "assistant", "metadata": "get_weather", "content": "{}"}
    assert msgs[9] == {"role": "assistant", "content": "Oslo 5C, Rome 25C.", "loss": False}
    assert check_messages(msgs) == []


def test_openai_bad_tool_arguments_in_json_array(tmp_path):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    bad_args = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": "{city: Oslo"}}]}]}
    bad_role = {"messages": [{"role": "robot", "content": "q"}], "tools": []}
    path = tmp_path / "o.json"
    path.write_text(json.dumps([good, bad_args, bad_role]), encoding="utf-8")
    result = read_any(path)
    assert result.format == "openai"
    assert codes(result) == [(f"{path}:record 2", "bad_tool_arguments"), (f"{path}:record 3", "unknown_role")]
    assert "message 2 tool call 1 arguments are a string but not JSON" in result.problems[0].reason
    assert result.conversations[0].source == f"{path}:record 1"
    assert result.total == 3


def test_glm4_matches_the_jsonl_reader(tmp_path):
    path = jsonl(tmp_path / "g.jsonl",
                 {"messages": [{"role": "system", "content": "", "tools": [GLM_TOOL]},
                               {"role": "user", "content": "w?"},
                               {"role": "assistant", "metadata": "get_weather", "content": '{"city": "x"}'},
                               {"role": "observation", "content": "sunny"},
                               {"role": "assistant", "content": "Sunny.", "loss": False}], "id": 1},
                 '{"messages": [broken',
                 {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]},
                 "",
                 {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    auto, forced, reference = read_any(path), read_any(path, format="glm4"), read_glm4_jsonl(path)
    assert auto.format == "glm4"
    for result in (auto, forced):
        assert [(c.messages, c.source, c.extra) for c in result.conversations] == \
               [(c.messages, c.source, c.extra) for c in reference.conversations]
        assert codes(result) == codes(reference) == [(f"{path}:2", "malformed_json"), (f"{path}:3", "empty_reply")]
        assert result.total == 4


def test_detect_format():
    assert detect_format({"instruction": "i", "output": "o"}) == "alpaca"
    assert detect_format({"conversations": []}) == "sharegpt"
    assert detect_format({"messages": [{"from": "human", "value": "x"}]}) == "sharegpt"
    assert detect_format({"messages": [{"role": "user", "content": "x"}]}) == "glm4"
    assert detect_format({"messages": [{"role": "observation", "content": "x"}]}) == "glm4"
    assert detect_format({"messages": [{"role": "tool", "content": "x"}]}) == "openai"
    assert detect_format({"messages": [{"role": "assistant", "tool_calls": []}]}) == "openai"
    assert detect_format({"messages": [], "tools": []}) == "openai"
    assert detect_format({"text": "x"}) is None
    assert detect_format([1, 2]) is None


def test_mixed_formats_and_explicit_format(tmp_path):
    alpaca = {"instruction": "q", "output": "a"}
    chat = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    path = jsonl(tmp_path / "m.jsonl", alpaca, alpaca, chat, {"text": "?"}, [1])
    result = read_any(path)
    assert result.format == "alpaca"
    assert codes(result) == [(f"{path}:3", "mixed_formats"), (f"{path}:4", "unknown_format"),
                             (f"{path}:5", "not_an_object")]
    forced = read_any(path, format="openai")
    assert [c.source for c in forced.conversations] == [f"{path}:3"]
    assert forced.total == 5 and {p.code for p in forced.problems} == {"no_messages", "not_an_object"}
    with pytest.raises(DataError, match="unknown data format"):
        read_any(path, format="yaml")


def test_csv_alpaca_and_messages(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text('instruction,input,output,system\n'
                    'Add,"1\n2",3,\n'
                    '\n'
                    'Hi,,Hello,Be nice\n'
                    'Bad,,\n'
                    'Empty,,,\n', encoding="utf-8")
    result = read_any(path)
    assert result.format == "alpaca" and result.total == 4
    assert [c.source for c in result.conversations] == [f"{path}:2", f"{path}:5"]
    assert result.conversations[0].messages[0] == {"role": "user", "content": "Add\n1\n2"}
    assert result.conversations[1].messages[0] == {"role": "system", "content": "Be nice"}
    assert codes(result) == [(f"{path}:6", "bad_csv_row"), (f"{path}:7", "empty_reply")]

    chat = tmp_path / "m.csv"
    msgs = [{"role": "user", "content": "q, \"quoted\""}, {"role": "assistant", "content": "a"}]
    with chat.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["messages", "note"], [json.dumps(msgs), "n1"], ["{bad", "n2"]])
    result = read_any(chat)
    assert result.conversations[0].messages == msgs and result.conversations[0].extra == {"note": "n1"}
    assert codes(result) == [(f"{chat}:3", "malformed_json")]


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [{"messages": [{"role": "user", "content": "q"},
                          {"role": "assistant", "content": '{"a": 1}', "metadata": "f"},
                          {"role": "observation", "content": "r"},
                          {"role": "assistant", "content": "done"}]},
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]}]
    path = tmp_path / "g.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)  # struct columns fill missing metadata with null
    result = read_any(path)
    assert result.format == "glm4" and result.total == 2
    assert result.conversations[0].messages == rows[0]["messages"]
    assert result.conversations[0].source == f"{path}:row 1"
    assert codes(result) == [(f"{path}:row 2", "empty_reply")]

    alpaca = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist([{"instruction": "q", "input": None, "output": "a"},
                                         {"instruction": "q", "input": "x", "output": None}]), alpaca)
    result = read_any(alpaca)
    assert result.conversations[0].messages[0] == {"role": "user", "content": "q"}
    assert codes(result) == [(f"{alpaca}:row 2", "missing_field")]
    bogus = tmp_path / "bogus.parquet"
    bogus.write_text("not parquet")
    with pytest.raises(DataError, match="parquet"):
        read_any(bogus)


def test_json_containers(tmp_path):
    single = tmp_path / "one.json"
    single.write_text(json.dumps({"instruction": "q", "output": "a"}), encoding="utf-8")
    assert [c.source for c in read_any(single).conversations] == [f"{single}:record 1"]

    broken = tmp_path / "broken.json"
    broken.write_text('[\n  {"instruction": "q",\n   "output": }\n]', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 3, column 14"):
        read_any(broken)

    lines = tmp_path / "lines.json"  # JSON Lines saved as .json
    lines.write_text('{"instruction": "q", "output": "a"}\n{oops\n', encoding="utf-8")
    result = read_any(lines)
    assert result.total == 2 and codes(result) == [(f"{lines}:2", "malformed_json")]

    scalar = tmp_path / "scalar.json"
    scalar.write_text("42")
    with pytest.raises(DataError, match="list of records"):
        read_any(scalar)


def test_file_level_errors(tmp_path):
    odd = tmp_path / "data.txt"
    odd.write_text("x")
    with pytest.raises(DataError, match=r"data\.txt.*\.jsonl, \.json, \.csv, \.parquet"):
        read_any(odd)
    with pytest.raises(DataError, match="not found"):
        read_any(tmp_path / "missing.jsonl")
    latin = tmp_path / "latin.json"
    latin.write_bytes('[{"instruction": "caf\u00e9", "output": "x"}]'.encode("latin-1"))
    with pytest.raises(DataError, match="UTF-8"):
        read_any(latin)


def test_bad_encoding_is_per_line_in_jsonl(tmp_path):
    path = tmp_path / "e.jsonl"
    good = json.dumps({"instruction": "q", "output": "a"}).encode()
    path.write_bytes(b"\xef\xbb\xbf" + good + b"\n" + '{"instruction": "caf\u00e9"}'.encode("latin-1") + b"\n" + good)
    result = read_any(path)
    assert result.total == 3 and codes(result) == [(f"{path}:2", "bad_encoding")]


def test_no_record_is_lost(tmp_path):
    records = [{"instruction": "q", "output": "a"}, "{not json", {"instruction": "q"}, "null", "[]",
               {"instruction": "q", "output": "a", "tools": 5}, {"output": "a", "instruction": ""}]
    path = jsonl(tmp_path / "n.jsonl", *records)
    result = read_any(path)
    assert result.total == len(records)
    assert len(result.problems) == len(result.rejected_records) == len(records) - 1
    assert {r["source"] for r in result.rejected_records} == {f"{path}:{n}" for n in range(2, 8)}
    for conv in result.conversations:
        assert check_messages(conv.messages) == []


def test_placeholders():
    messages = [
        {"role": "system", "content": "", "tools": [{"type": "function", "function": {
            "name": "whoami", "description": "About {{name}}", "parameters": {}}}]},
        {"role": "user", "content": "Who are you?"},
        {"role": "assistant", "metadata": "whoami", "content": '{"who": "{{ name }}"}'},
        {"role": "assistant", "content": "I am {{name}}, made by {{ author }}. {{unknown}} {name}"},
    ]
    assert find_placeholders(messages) == {"name", "author", "unknown"}
    filled = fill_placeholders(messages, {"name": 'Nova "N"', "author": "Acme"})
    assert filled[0]["tools"][0]["function"]["description"] == 'About Nova "N"'
    assert json.loads(filled[2]["content"]) == {"who": 'Nova "N"'}  # escaped inside JSON content
    assert filled[3]["content"] == 'I am Nova "N", made by Acme. {{unknown}} {name}'
    assert find_placeholders(filled) == {"unknown"}
    assert messages[3]["content"].startswith("I am {{name}}")  # the input is not modified
