"""One encoding path: the same dirty file read through the Arrow cache and through the stream gives the same
samples, the same cleaned conversations and the same rejects (issue 23, "streaming equals cache")."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest

from glmtune.config.schema import DataSource
from glmtune.data.conversation import Conversation
from glmtune.data.train_clean import CleanSettings
from glmtune.layout import get_layout
from glmtune.layout.encode import EncodeSpec, encode_all
from glmtune.train.dataset import encode_sources
from glmtune.train.stream import SampleStream, StreamedData

NAME, AUTHOR = "Nova", "Nova Labs"


def _chat(*turns: str, **last: object) -> dict:
    roles = ["user", "assistant"] * len(turns)
    messages = [{"role": r, "content": t} for r, t in zip(roles, turns)]
    messages[-1].update(last)
    return {"messages": messages}


def dirty_file(path: Path) -> Path:
    """Every kind of problem the cleaner, the placeholder filler and the encoder handle, plus clean rows."""
    rows: list[dict | str] = [
        _chat("  Who are you?\n", "I am {{name}}, made by {{author}}. "),  # filled and trimmed
        _chat("Who are you?", "I am {{name}}, made by {{author}}."),  # a duplicate once repaired
        _chat("你是谁？", "我是ChatGLM，由智谱AI开发。"),  # asserts the old identity: dropped
        "{broken json",
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "there"},
                      {"role": "assistant", "content": "Hello!"}]},  # repeated role: merged
        _chat("Tell me {{secret}}", "No."),  # a placeholder nobody fills
        _chat("word " * 200, "ok"),  # every trained token beyond max_length: dropped by the encoder
        _chat("a long answer, please", "answer " * 80),  # the reply cut at max_length: truncated, kept
        {"messages": [{"role": "system", "content": "You are {{name}}."}, {"role": "user", "content": "name?"},
                      {"role": "assistant", "content": "{{name}}"}]},
        _chat("a", "b", loss=False),  # nothing to train
        _chat("2 + 2?", "4"),
        _chat("Where is Paris?", "In France."),
    ]
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


@pytest.fixture()
def spec(tiny_tokenizer) -> EncodeSpec:
    return EncodeSpec(get_layout(tiny_tokenizer), combine=True, max_length=64, truncation="official",
                      values={"name": NAME, "author": AUTHOR}, clean=CleanSettings(True, NAME, AUTHOR, True))


def _rejects(path: Path) -> list[dict]:
    return sorted((json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()),
                  key=lambda r: (r["source"], r["code"]))


def test_streamed_rows_and_rejects_equal_the_cached_ones(tmp_path: Path, spec: EncodeSpec,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    sources = [DataSource(path=str(dirty_file(tmp_path / "dirty.jsonl")))]
    cached = encode_sources(sources, spec, rejects_path=tmp_path / "cached.jsonl",
                            cache_dir=str(tmp_path / "cache"))
    stream = StreamedData(sources, spec, tmp_path / "streamed.jsonl")
    caplog.set_level(logging.INFO, logger="glmtune")  # only the probe's messages
    probe, stats = stream.probe(1.0)
    assert f"  {sources[0].path}: 1 merged turns, 3 trimmed whitespace, 1 exact duplicate(s) removed, 1 reply/" \
        "replies asserting the old identity left out" in caplog.messages

    want = [(r["input_ids"], r["labels"], r["source"]) for r in cached.rows]
    assert [(r["input_ids"], r["labels"], r["source"]) for r in stream.validation(1000)] == want
    assert [(r["input_ids"], r["labels"], r["source"]) for r in probe.rows] == want
    trained = Counter((tuple(r["input_ids"]), tuple(r["labels"])) for r in stream.training(0, seed=3))
    assert trained == Counter((tuple(ids), tuple(labels)) for ids, labels, _ in want)
    assert [c.messages for c in probe.conversations] == [c.messages for c in cached.conversations]
    assert (probe.records, probe.rejected) == (cached.records, cached.rejected) == (12, 5)
    assert (probe.result.truncated, probe.result.trained_tokens, probe.result.trained_tokens_removed) == (
        cached.result.truncated, cached.result.trained_tokens, cached.result.trained_tokens_removed)
    assert stats.samples == len(want) == 6 and cached.result.truncated == 2

    assert _rejects(tmp_path / "streamed.jsonl") == _rejects(tmp_path / "cached.jsonl")
    codes = Counter(r["code"] for r in _rejects(tmp_path / "cached.jsonl"))
    assert codes == {"duplicate": 1, "identity_conflict": 1, "malformed_json": 1, "unfilled_placeholder": 1,
                     "all_labels_truncated": 1, "nothing_to_train": 1}
    first = probe.conversations.head(1)[0].messages
    assert first == [{"role": "user", "content": "Who are you?"},
                     {"role": "assistant", "content": f"I am {NAME}, made by {AUTHOR}."}]


def test_each_pass_and_each_file_starts_a_fresh_cleaner(tmp_path: Path, spec: EncodeSpec) -> None:
    """The same file twice: its duplicates are found within each copy, as the cache (one entry per file) does."""
    path = dirty_file(tmp_path / "dirty.jsonl")
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(path.read_bytes())
    sources = [DataSource(path=str(path)), DataSource(path=str(copy))]
    cached = encode_sources(sources, spec, rejects_path=None, cache=False)
    stream = SampleStream(sources, spec, with_source=True)
    first, second = list(stream()), list(stream())
    assert first == second and len(first) == len(cached.rows) == 12
    assert [(r["input_ids"], r["source"]) for r in first] == [(r["input_ids"], r["source"]) for r in cached.rows]


def test_replay_rows_go_through_the_same_step(spec: EncodeSpec) -> None:
    """``encode_all`` (the in-memory form replay rows use) fills, cleans and encodes like the cache."""
    convs = [Conversation([{"role": "user", "content": " hi "}, {"role": "assistant", "content": "I am {{name}}"}],
                          "r:1"),
             Conversation([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "I am {{name}}"}],
                          "r:2"),
             Conversation([{"role": "user", "content": "who?"}, {"role": "assistant", "content": "Zhipu's GLM-4"}],
                          "r:3")]
    result, rejects = encode_all(convs, spec)
    assert result.sources == ["r:1"] and [r["code"] for r in rejects] == ["duplicate", "identity_conflict"]
    alone = encode_all(convs[:1], EncodeSpec(spec.layout, True, 64, values={"name": NAME}))[0]
    assert alone.input_ids != result.input_ids  # the step trimmed " hi " before encoding
    assert spec.layout.encode([{"role": "user", "content": "hi"}, {"role": "assistant", "content": f"I am {NAME}"}],
                              combine=True).input_ids == result.input_ids[0]


def test_a_streaming_run_cleans_its_data_like_a_cached_run(tmp_path: Path, tiny_model: Path) -> None:
    from glmtune.config.loader import validate_config
    from glmtune.train.recipe import prepare_run

    data = dirty_file(tmp_path / "dirty.jsonl")
    runs = {}
    for streaming in (False, True):
        config = validate_config({
            "model": {"name_or_path": str(tiny_model)}, "identity": {"name": NAME, "author": AUTHOR},
            "data": {"train_file": str(data), "max_length": 64, "truncation": "official", "streaming": streaming,
                     "max_reject_ratio": 0.9},
            "peft": {"lora": {"r": 4, "alpha": 8, "target_modules": "all-linear"}},
            "training": {"output_dir": str(tmp_path / f"run-{streaming}"), "max_steps": 3, "report_to": []}})
        runs[streaming] = prepare_run(config, None).train
    cached, streamed = runs[False], runs[True]
    assert [(r["input_ids"], r["source"]) for r in streamed.rows] == [(r["input_ids"], r["source"])
                                                                      for r in cached.rows]
    assert streamed.rejected == cached.rejected
