"""The public LLaMA-Factory demo data sets in ../shared/data load completely and losslessly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from glmtune.data.conversation import check_messages
from glmtune.data.placeholders import fill_placeholders, find_placeholders
from glmtune.data.read import read_any

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
# Record counts as found in the files (the README says 1000 for alpaca_en_demo.json; the file holds 999).
FILES = {
    "identity.json": ("alpaca", 91),
    "alpaca_zh_demo.json": ("alpaca", 1000),
    "alpaca_en_demo.json": ("alpaca", 999),
    "glaive_toolcall_zh_demo.json": ("sharegpt", 300),
    "glaive_toolcall_en_demo.json": ("sharegpt", 300),
}
TOOL_FILES = [name for name, (fmt, _) in FILES.items() if fmt == "sharegpt"]
ALPACA_FILES = [name for name, (fmt, _) in FILES.items() if fmt == "alpaca"]


def shared(name: str) -> Path:
    """Path of a shared data file, or skip the test when ../shared/data is absent."""
    path = SHARED / name
    if not path.is_file():
        pytest.skip(f"../shared/data is absent ({path} not found); these tests need the shared data sets")
    return path


def raw_records(path: Path) -> list[dict]:
    """The file's records exactly as json.load sees them."""
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", list(FILES))
def test_loads_every_record(name):
    path = shared(name)
    fmt, count = FILES[name]
    result = read_any(path)
    assert result.problems == [] and result.rejected_records == []
    assert result.format == fmt
    assert result.total == len(result.conversations) == count == len(raw_records(path))
    assert [c.source for c in result.conversations] == [f"{path}:record {n}" for n in range(1, count + 1)]
    for conv in result.conversations:
        assert check_messages(conv.messages) == []


@pytest.mark.parametrize("name", ALPACA_FILES)
def test_alpaca_is_lossless(name):
    path = shared(name)
    records = raw_records(path)
    result = read_any(path)
    for record, conv in zip(records, result.conversations, strict=True):
        assert conv.messages[-1] == {"role": "assistant", "content": record["output"]}
        prompt = record["instruction"] + ("\n" + record["input"] if record["input"] else "")
        assert conv.messages[-2] == {"role": "user", "content": prompt}


@pytest.mark.parametrize("name", TOOL_FILES)
def test_tool_calls_and_observations(name):
    path = shared(name)
    records = raw_records(path)
    result = read_any(path)
    want_calls = sum(1 for r in records for t in r["conversations"] if t["from"] == "function_call")
    want_obs = sum(1 for r in records for t in r["conversations"] if t["from"] == "observation")
    calls = observations = 0
    for record, conv in zip(records, result.conversations, strict=True):
        tools = json.loads(record["tools"])
        names = {tool["name"] for tool in tools}
        if tools:
            assert conv.messages[0] == {"role": "system", "content": "",
                                        "tools": [{"type": "function", "function": t} for t in tools]}
        else:
            assert conv.messages[0]["role"] == "user"
        for msg in conv.messages:
            if msg.get("metadata"):
                calls += 1
                assert msg["role"] == "assistant" and msg["metadata"] in names
                assert isinstance(json.loads(msg["content"]), dict)
            observations += msg["role"] == "observation"
        gpt = [t["value"] for t in record["conversations"] if t["from"] == "gpt"]
        plain = [m["content"] for m in conv.messages if m["role"] == "assistant" and not m.get("metadata")]
        assert plain == gpt
    assert calls == want_calls > 200 and observations == want_obs


def test_identity_placeholders_fill():
    path = shared("identity.json")
    result = read_any(path)
    found = set().union(*(find_placeholders(c.messages) for c in result.conversations))
    assert found == {"name", "author"}
    for conv in result.conversations:
        filled = fill_placeholders(conv.messages, {"name": "Nova", "author": "Acme Labs"})
        assert find_placeholders(filled) == set()
        assert "{{" not in json.dumps(filled, ensure_ascii=False)
