"""``glmtune data check``: each problem at its line, repairs, no data loss, stats, exit codes, identity."""

from __future__ import annotations

import io
import json
import logging
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glmtune.data.check import (
    WARNINGS,
    CheckResult,
    check_file,
    parse_set_values,
    print_summary,
    problem_kind,
)
from glmtune.data.conversation import Conversation
from glmtune.data.identity_guard import format_warning, scan_identity
from glmtune.data.read import read_any
from glmtune.errors import DataError, UserError
from glmtune.layout.measure import TokenMeasure

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "problems.jsonl"
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
REAL_FILES = ["alpaca_en_demo.json", "alpaca_zh_demo.json", "glaive_toolcall_en_demo.json",
              "glaive_toolcall_zh_demo.json", "identity.json"]

# Line of tests/fixtures/problems.jsonl -> the codes reported there (checked with --set name=Nova only).
EXPECTED = {
    2: {"malformed_json"}, 3: {"bad_encoding"}, 4: {"mixed_formats"}, 5: {"unknown_role"},
    6: {"repeated_role"}, 7: {"orphan_observation"}, 8: {"missing_observation"}, 9: {"empty_content"},
    10: {"no_reply"}, 11: {"bad_tool_arguments"}, 12: {"unknown_tool"}, 13: {"duplicate"}, 14: {"near_duplicate"},
    15: {"conflicting_answer"}, 16: {"unfilled_placeholder"}, 18: {"stringified_tools"},
    20: {"repeated_role"}, 21: {"empty_content", "no_reply"}, 22: {"empty_content", "repeated_role"},
}
QUARANTINED = {2: "malformed_json", 3: "bad_encoding", 4: "mixed_formats", 5: "unknown_role",
               7: "orphan_observation", 8: "missing_observation", 10: "no_reply", 11: "bad_tool_arguments",
               12: "unknown_tool", 13: "duplicate", 14: "near_duplicate", 16: "unfilled_placeholder",
               21: "no_reply"}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
TOOLS = {"role": "system", "content": "", "tools": [WEATHER]}


def msg(role: str, content: str, **extra: Any) -> dict[str, Any]:
    """One GLM-4 message."""
    return {"role": role, "content": content, **extra}


def call(city: str) -> dict[str, Any]:
    """A get_weather function call."""
    return msg("assistant", json.dumps({"city": city}), metadata="get_weather")


def line_of(source: str) -> int:
    """The line number of a ``path:line`` source."""
    return int(source.rsplit(":", 1)[1])


def codes_by_line(result: CheckResult) -> dict[int, set[str]]:
    """Reported codes grouped by fixture line."""
    found: dict[int, set[str]] = defaultdict(set)
    for problem in result.problems:
        found[line_of(problem.source)].add(problem.code)
    return dict(found)


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_every_problem_is_reported_at_its_line_with_its_code() -> None:
    result = check_file(FIXTURE, values={"name": "Nova"})
    assert codes_by_line(result) == EXPECTED
    assert result.format == "glm4"
    assert result.total == 23  # 24 lines, one blank
    assert {line_of(row["source"]): row["code"] for row in result.quarantined} == QUARANTINED
    assert result.total == len(result.kept) + len(result.quarantined)
    assert result.exit_code == 1
    assert problem_kind("no_reply") == "error" and problem_kind("repeated_role") == "fixable"
    assert problem_kind("conflicting_answer") == "warning"


def test_too_long_needs_the_model_tokenizer(tiny_model: Path) -> None:
    result = check_file(FIXTURE, measure=TokenMeasure.from_model(str(tiny_model), 512),
                        values={"name": "Nova", "author": "Acme Lab"})
    too_long = [p for p in result.problems if p.code == "too_long"]
    assert [line_of(p.source) for p in too_long] == [17]
    # the default keep_recent truncation keeps the reply; the official right cut loses all of it
    assert "all 8 trained tokens of the reply are kept" in too_long[0].reason
    official = check_file(FIXTURE, measure=TokenMeasure.from_model(str(tiny_model), 512, "official"),
                          values={"name": "Nova", "author": "Acme Lab"})
    reason = next(p.reason for p in official.problems if p.code == "too_long")
    assert "leaves no reply token to train on" in reason and "dropped" in reason
    stats = result.stats
    assert stats["length_unit"] == "tokens"
    assert stats["truncation"] == {"max_length": 512, "truncated": 1, "share": round(1 / len(result.kept), 4)}
    assert stats["total_length"]["max"] > 512 and stats["reply_length"]["count"] == len(result.kept)


def test_repairs_produce_the_expected_fixed_output(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fix, rejects, report = tmp_path / "fixed.jsonl", tmp_path / "rejects.jsonl", tmp_path / "report.json"
    caplog.set_level(logging.INFO, logger="glmtune")
    result = check_file(FIXTURE, fix=str(fix), quarantine=str(rejects), report=str(report),
                        values={"name": "Nova"})
    expected = [
        {"messages": [msg("user", "What is the capital of France?"),
                      msg("assistant", "Paris is the capital of France.")], "id": "q1"},
        {"messages": [msg("user", "Tell me a joke.\nA short one please."),
                      msg("assistant", "Why did the chicken cross the road?")]},
        {"messages": [msg("user", "How are you?"), msg("assistant", "Fine, thanks.")]},
        {"messages": [msg("user", "What is the capital of France?"), msg("assistant", "It is Lyon.")]},
        None,  # line 17: the long one, checked below
        {"messages": [TOOLS, msg("user", "Weather in Kyiv?"), call("Kyiv"), msg("observation", '{"temp": 5}'),
                      msg("assistant", "5 degrees.")]},
        # NFC-composed and trimmed; full-width punctuation left alone
        {"messages": [msg("user", "Caf\u00e9 opening hours?"), msg("assistant", "Nine to five\uff0c每天。")]},
        {"messages": [msg("user", "Count to two."), msg("assistant", "One.\nTwo.")]},
        {"messages": [msg("user", "First question?\nSecond question?"), msg("assistant", "Answer to both.")]},
        {"messages": [TOOLS, msg("user", "Weather in Tokyo?"), call("Tokyo"),
                      msg("observation", '{"temp": 18}'), msg("assistant", "18 degrees in Tokyo.")]},
    ]
    rows = read_jsonl(fix)
    assert len(rows) == len(expected) == len(result.kept)
    for row, want in zip(rows, expected):
        if want is None:
            assert row["messages"][0]["content"].startswith("word0 and") and len(row["messages"]) == 2
        else:
            assert row == want
    repairs = {(line_of(r.source), r.code) for r in result.repairs}
    assert repairs == {(6, "merged_turns"), (6, "trimmed_whitespace"), (9, "dropped_empty_turn"),
                       (13, "removed_duplicate"), (14, "removed_duplicate"), (18, "parsed_tools"),
                       (19, "trimmed_whitespace"), (19, "nfc_normalised"), (20, "merged_turns"),
                       (22, "dropped_empty_turn"), (22, "merged_turns")}
    quarantined = read_jsonl(rejects)
    assert {line_of(r["source"]): r["code"] for r in quarantined} == QUARANTINED
    by_line = {line_of(r["source"]): r for r in quarantined}
    assert by_line[13]["reason"] == by_line[14]["reason"] == f"duplicate_of {FIXTURE}:1"
    assert "raw" in by_line[2] and "raw" in by_line[3]
    assert by_line[5]["record"]["messages"][0]["role"] == "bot"
    data = json.loads(report.read_text(encoding="utf-8"))
    assert (data["counts"]["input"], data["counts"]["kept"], data["counts"]["quarantined"]) == (23, 10, 13)
    assert data["exit_code"] == 1 and len(data["problems"]) == len(result.problems)
    assert len(data["repairs"]) == len(result.repairs) and data["stats"]["length_unit"] == "characters"
    assert set(data["stats"]) >= {"prompt_length", "reply_length", "turns", "roles", "tools", "language"}
    assert data["stats"]["tools"]["function_calls"] == 2 and data["stats"]["language"]["cjk"]["count"] == 1
    assert any("wrote 10" in line for line in caplog.messages)


def test_fixed_output_is_readable_and_rechecks_with_warnings_only(tmp_path: Path) -> None:
    fix = tmp_path / "fixed.jsonl"
    first = check_file(FIXTURE, fix=str(fix), values={"name": "Nova"})
    read = read_any(fix)
    assert not read.problems and len(read.conversations) == len(first.kept)
    again = check_file(fix)
    assert {p.code for p in again.problems} <= WARNINGS
    assert len(again.kept) == len(first.kept) and not again.repairs


def test_set_values_fill_every_placeholder() -> None:
    result = check_file(FIXTURE, values=parse_set_values(["name=Nova", "author=Acme Lab"]))
    assert 16 not in codes_by_line(result)
    kept = {line_of(c.source): c for c in result.kept}
    assert kept[16].messages[1]["content"] == "I am Nova, made by Acme Lab."
    assert (16, "filled_placeholder") in {(line_of(r.source), r.code) for r in result.repairs}


def test_summary_keeps_codes_visible() -> None:
    from rich.console import Console

    result = check_file(FIXTURE, values={"name": "Nova"})
    buffer = io.StringIO()
    print_summary(result, Console(file=buffer, width=200, highlight=False), limit=100)
    text = buffer.getvalue()
    assert "input 23 = kept 10 + quarantined 13" in text
    assert "[malformed_json]" in text and "[duplicate]" in text and f"{FIXTURE}:2" in text


def test_exit_codes_and_usage_errors(tmp_path: Path) -> None:
    clean = tmp_path / "clean.jsonl"
    clean.write_text(json.dumps({"messages": [msg("user", "hi"), msg("assistant", "hello")]}) + "\n")
    assert check_file(clean).exit_code == 0
    assert check_file(FIXTURE).exit_code == 1
    same = str(tmp_path / "a.jsonl")
    bad_calls = [dict(format="yaml"), dict(fix=str(clean)),
                 dict(fix=same, quarantine=same), dict(values={"a b": "x"})]
    for kwargs in bad_calls:
        with pytest.raises(UserError) as info:
            check_file(clean, **kwargs)
        assert info.value.exit_code == 2
    with pytest.raises(DataError):
        check_file(tmp_path / "missing.jsonl")
    with pytest.raises(UserError):
        parse_set_values(["no-equals-sign"])


@pytest.mark.parametrize("name", REAL_FILES)
def test_real_files_lose_nothing(name: str, tmp_path: Path) -> None:
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"shared data set {path} is absent (a fresh clone has no ../shared)")
    records = json.loads(path.read_text(encoding="utf-8"))
    runs = [None, {"name": "Nova", "author": "Acme Lab"}] if name == "identity.json" else [None]
    for values in runs:
        fix, rejects = tmp_path / "fixed.jsonl", tmp_path / "rejects.jsonl"
        result = check_file(path, fix=str(fix), quarantine=str(rejects), values=values)
        kept, quarantined = read_jsonl(fix), read_jsonl(rejects)
        assert result.total == len(records) == len(kept) + len(quarantined)
        assert len(result.kept) == len(kept) and len(result.quarantined) == len(quarantined)
        unfilled = sum(p.code == "unfilled_placeholder" for p in result.problems)
        if name == "identity.json" and values is None:
            assert unfilled == sum("{{" in json.dumps(r) for r in records) > 0
        else:
            assert unfilled == 0
        if name == "identity.json" and values:
            assert len(result.kept) == len(records) and "Nova" in result.kept[0].messages[-1]["content"]


# Random and broken records: never crash, never lose a record, and the fixed output re-checks clean.
ROLES = ["system", "user", "assistant", "observation", "tool", "bot", "human", "gpt", ""]
SAMPLES = ["", "  ", "{{name}}", '{"a": 1}', "Hi!", "hi", "\u0301x"]
texts = st.one_of(st.text(max_size=8), st.sampled_from(SAMPLES))
values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), texts),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)),
    max_leaves=6)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(ROLES)},
    optional={"content": st.one_of(texts, values),
              "metadata": st.one_of(st.sampled_from(["f", "g", ""]), values),
              "tools": st.one_of(st.just('[{"name": "f", "parameters": {}}]'), st.just([WEATHER]), values)})
sharegpt_turn = st.fixed_dictionaries(
    {"from": st.sampled_from(["human", "gpt", "function_call", "observation"]), "value": texts})
record = st.one_of(
    st.fixed_dictionaries({"messages": st.lists(message, max_size=5)}),
    st.fixed_dictionaries({"instruction": texts, "output": texts}, optional={"input": texts}),
    st.fixed_dictionaries({"conversations": st.lists(sharegpt_turn, max_size=4)}),
    values,
)
plausible = st.fixed_dictionaries({"messages": st.lists(st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "observation"]), "content": texts},
    optional={"metadata": st.sampled_from(["get_weather", "f"]), "tools": st.just([WEATHER])}),
    min_size=1, max_size=5)})
pairs = st.lists(st.tuples(texts, texts), min_size=1, max_size=3).map(lambda turns: {"messages": [
    m for u, a in turns for m in (msg("user", u), msg("assistant", a))]})
with_call = st.tuples(texts, texts, texts).map(lambda t: {"messages": [
    TOOLS, msg("user", t[0]), call(t[1]), msg("observation", t[2]), msg("assistant", t[2] + ".")]})
broken = st.one_of(st.binary(max_size=12).filter(lambda b: b"\n" not in b), st.just(b'{"messages": ['),
                   st.just(b"\xff\xfe{}"))
line = st.one_of(*(s.map(lambda r: json.dumps(r).encode()) for s in (pairs, with_call, plausible, record)),
                 plausible.map(lambda r: json.dumps(r, ensure_ascii=False).encode()), broken)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(line, min_size=1, max_size=8), fill=st.booleans(), repeat=st.booleans())
def test_random_records_never_crash_and_lose_nothing(lines: list[bytes], fill: bool, repeat: bool) -> None:
    lines = lines + lines[:1] if repeat else lines  # an exact duplicate now and then
    with tempfile.TemporaryDirectory() as tmp:
        src, fix, rejects = Path(tmp, "in.jsonl"), Path(tmp, "fixed.jsonl"), Path(tmp, "rejects.jsonl")
        src.write_bytes(b"\n".join(lines) + b"\n")
        nonblank = sum(1 for raw in src.read_bytes().split(b"\n") if raw.decode("utf-8", "replace").strip())
        if not nonblank:  # an empty file is the user's to fix: exit 2, nothing written
            with pytest.raises(DataError, match="no records"):
                check_file(src, fix=str(fix), quarantine=str(rejects))
            return
        result = check_file(src, fix=str(fix), quarantine=str(rejects),
                            values={"name": "N"} if fill else None)
        kept, quarantined = fix.read_bytes().count(b"\n"), rejects.read_bytes().count(b"\n")
        assert result.total == nonblank == kept + quarantined == len(result.kept) + len(result.quarantined)
        if kept:
            assert not read_any(fix).problems
            again = check_file(fix)
            assert {p.code for p in again.problems} <= WARNINGS and len(again.kept) == kept


def test_scan_identity_counts_tool_prompts_and_old_names() -> None:
    convs = [
        Conversation([TOOLS, msg("user", "hi"), msg("assistant", "Hello")], "d:1"),
        Conversation([msg("user", "who?"), msg("assistant", "I am ChatGLM, trained by Zhipu AI.")], "d:2"),
        Conversation([msg("system", "你是智谱开发的助手。"), msg("user", "你好"),
                      msg("assistant", "你好！")], "d:3"),
        Conversation([msg("user", "Are you ChatGLM?"),
                      msg("assistant", "No, I am GLM-4-Helper by Acme.")], "d:4"),
        Conversation([msg("user", "call"),
                      msg("assistant", '{"q": "ChatGLM"}', metadata="get_weather")], "d:5"),
    ]
    scan = scan_identity(convs, "GLM-4-Helper", "Acme")
    assert scan.conversations == 5 and scan.tool_prompt == 1 and scan.old_identity == 2
    assert scan.tool_prompt_samples == ["d:1: declares tools (get_weather)"]
    assert scan.old_identity_samples == ["d:2: I am ChatGLM, trained by Zhipu AI.",
                                         "d:3: 你是智谱开发的助手。"]
    assert set(scan.old_names_found) == {"ChatGLM", "Zhipu", "智谱"}
    warning = format_warning(scan)
    assert warning and "1 of 5 conversations carry tools" in warning and "ChatGLM" in warning
    assert "d:2: I am ChatGLM" in warning and "d:1: declares tools" in warning
    many = scan_identity([convs[1].messages] * 8, "Nova", None)
    assert many.old_identity == 8 and len(many.old_identity_samples) == 5
    assert many.old_identity_samples[0].startswith("conversation 1: ")
    clean = scan_identity([convs[3], convs[4]], "GLM-4-Helper", "Acme")
    assert clean.clean and format_warning(clean) is None
