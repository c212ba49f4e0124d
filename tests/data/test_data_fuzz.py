"""Fuzz ``read_any``: random JSON values and broken lines never crash it, and no JSONL record is lost."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glmtune.data.conversation import check_messages
from glmtune.data.read import read_any
from glmtune.errors import DataError

KEYS = ["messages", "conversations", "role", "content", "from", "value", "instruction", "input", "output",
        "system", "history", "tools", "tool_calls", "function", "function_call", "name", "arguments",
        "metadata", "type", "weight", "loss", "text", "reasoning_content", "reasoning", "enable_thinking",
        "chat_template_kwargs"]
ROLES = ["system", "developer", "user", "assistant", "tool", "observation", "human", "gpt", "function_call",
         "function", "bot", ""]

THINK = ["<think>r</think>", "</think>a", "<think></think>", "r", ""]
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                    st.text(max_size=12), st.sampled_from(ROLES), st.sampled_from(['{"name": "f"}', "{}", "[]", *THINK]))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=5)), inner,
                                            max_size=5)),
    max_leaves=8,
)
# Records shaped like the real formats, with random values where the fields go.
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(ROLES)},
                                          optional={"content": json_values, "from": st.sampled_from(ROLES),
                                                    "value": json_values, "tool_calls": json_values,
                                                    "metadata": json_values, "tools": json_values,
                                                    "reasoning_content": json_values,
                                                    "reasoning": st.sampled_from(THINK)}),
                    max_size=3)
words = st.text(min_size=1, max_size=10)
call = st.fixed_dictionaries({"name": st.sampled_from(["f", "g"]), "arguments": st.one_of(
    st.dictionaries(words, words, max_size=2), st.just('{"a": 1}'), st.just("{bad"))}).map(json.dumps)
sharegpt_turn = st.one_of(
    st.fixed_dictionaries({"from": st.sampled_from(["human", "gpt", "observation", "system"]), "value": words}),
    st.fixed_dictionaries({"from": st.just("function_call"), "value": call}))
plausible = st.one_of(
    st.fixed_dictionaries({"instruction": words, "output": words},
                          optional={"input": words, "history": st.lists(st.lists(words, min_size=2, max_size=2),
                                                                        max_size=2)}),
    st.fixed_dictionaries({"conversations": st.lists(sharegpt_turn, min_size=1, max_size=4)},
                          optional={"tools": st.just('[{"name": "f", "parameters": {}}]')}),
    st.fixed_dictionaries({"messages": st.lists(st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user", "assistant", "tool"]), "content": words}), max_size=4)}),
)
records = st.one_of(
    plausible,
    json_values,
    st.fixed_dictionaries({"messages": messages}, optional={"tools": json_values, "system": json_values}),
    st.fixed_dictionaries({"conversations": messages}, optional={"tools": json_values}),
    st.fixed_dictionaries({"instruction": json_values, "output": json_values},
                          optional={"input": json_values, "history": json_values, "system": json_values}),
)
broken_lines = st.one_of(
    st.text(max_size=30).map(lambda s: s.replace("\n", " ").encode("utf-8")),
    st.binary(max_size=30).map(lambda b: b.replace(b"\n", b" ")),
    records.map(lambda r: json.dumps(r)[: max(1, len(json.dumps(r)) // 2)].encode()),
)
lines = st.lists(st.one_of(records.map(lambda r: json.dumps(r, ensure_ascii=False).encode("utf-8")), broken_lines),
                 max_size=6)
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _non_blank(line: bytes, first: bool) -> bool:
    text = line.decode("utf-8", errors="replace")
    return bool((text.removeprefix("\ufeff") if first else text).strip())


@FUZZ
@given(lines)
def test_jsonl_never_loses_a_record(body):
    data = b"\n".join(body)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.jsonl"
        path.write_bytes(data)
        result = read_any(path)
    expected = sum(_non_blank(line, n == 0) for n, line in enumerate(data.split(b"\n")))
    assert result.total == expected
    assert len(result.problems) == len(result.rejected_records)
    for conv in result.conversations:
        assert check_messages(conv.messages) == []


@FUZZ
@given(st.one_of(st.lists(records, max_size=6).map(lambda rs: (json.dumps(rs).encode(), len(rs))),
                 lines.map(lambda body: (b"\n".join(body), None))))
def test_json_raises_only_data_error(case):
    data, count = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.json"
        path.write_bytes(data)
        try:
            result = read_any(path)
        except DataError:
            assert count is None  # a valid JSON list never fails at file level
            return
    if count is not None:
        assert result.total == count
    for conv in result.conversations:
        assert check_messages(conv.messages) == []
