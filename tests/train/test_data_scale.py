"""Tokenising through `datasets`: identical samples to the in-memory loop, the content-hash cache, several
processes, and streaming (lazy IterableDataset) training with max_steps."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import pytest
from datasets import Dataset, IterableDataset
from transformers import AutoTokenizer

from bench.encode_loop import encode_sources_loop
from glmtune.config.loader import ConfigError, validate_config
from glmtune.config.schema import DataSource
from glmtune.layout import get_layout
from glmtune.train.dataset import encode_sources, split_validation, to_dataset
from tests.conftest import FIXTURES, write_jsonl


def _sources(tmp_path: Path) -> list[DataSource]:
    varied = shutil.copy(FIXTURES / "varied.jsonl", tmp_path / "varied.jsonl")
    bad = shutil.copy(FIXTURES / "bad.jsonl", tmp_path / "bad.jsonl")
    return [DataSource(path=str(varied)), DataSource(path=str(bad), weight=2.5)]


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What glmtune logged since the last ``caplog.clear()``."""
    return [r.getMessage() for r in caplog.records if r.name.startswith("glmtune.")]


def _encode(tmp_path: Path, layout, sources, caplog: pytest.LogCaptureFixture | None = None, **kw):
    """Encode ``sources``; with ``caplog``, also return the lines ``encode_sources`` logged."""
    if caplog is not None:
        caplog.set_level(logging.INFO, logger="glmtune")
        caplog.clear()
    kw = {"combine": True, "max_length": 40, "truncation": "keep_recent", **kw}
    enc = encode_sources(sources, layout, rejects_path=tmp_path / "rej.jsonl", cache_dir=str(tmp_path / "cache"),
                         **kw)
    return enc, _messages(caplog) if caplog is not None else []


@pytest.mark.parametrize("combine,truncation", [(True, "keep_recent"), (False, "official"), (False, "keep_recent")])
def test_datasets_path_equals_the_python_loop(tmp_path: Path, tiny_tokenizer, combine, truncation):
    layout = get_layout(tiny_tokenizer)
    sources = _sources(tmp_path)
    old = encode_sources_loop(sources, layout, combine, 40, tmp_path / "old.jsonl", truncation=truncation)
    new, _ = _encode(tmp_path, layout, sources, combine=combine, truncation=truncation)
    assert isinstance(new.rows, Dataset)
    rows = list(new.rows)
    assert [r["input_ids"] for r in rows] == [r["input_ids"] for r in old.rows]
    assert [r["labels"] for r in rows] == [r["labels"] for r in old.rows]
    assert [r["source"] for r in rows] == [r["source"] for r in old.rows]
    assert any(x == -100 for r in rows for x in r["labels"]) and any(len(r["input_ids"]) == 40 for r in rows)
    assert (new.records, new.rejected, new.result.truncated, new.result.trained_tokens,
            new.result.trained_tokens_removed) == (old.records, old.rejected, old.result.truncated,
                                                   old.result.trained_tokens, old.result.trained_tokens_removed)
    assert new.result.truncated > 0 and new.result.trained_tokens_removed > 0
    assert (tmp_path / "rej.jsonl").read_text() == (tmp_path / "old.jsonl").read_text()
    assert [c.messages for c in new.conversations] == [c.messages for c in old.conversations]
    assert new.lengths == [len(r["input_ids"]) for r in old.rows]
    train_new, val_new = split_validation(new.rows, 3, seed=5)
    train_old, val_old = split_validation(old.rows, 3, seed=5)
    assert [r["source"] for r in val_new] == [r["source"] for r in val_old]
    assert to_dataset(train_new)["input_ids"][:] == to_dataset(train_old)["input_ids"][:]


def _hits(lines: list[str]) -> int:
    return sum("(cache hit: " in line for line in lines)


def test_second_run_hits_the_cache_and_any_change_misses(tmp_path: Path, tiny_tokenizer, caplog):
    layout = get_layout(tiny_tokenizer)
    sources = _sources(tmp_path)
    first, lines = _encode(tmp_path, layout, sources, caplog)
    assert _hits(lines) == 0 and "(cached: " in lines[1]
    again, lines = _encode(tmp_path, layout, sources, caplog)
    assert _hits(lines) == 2
    match = re.fullmatch(r"  tokenized (\d+) samples \(cache hit: (.+)\)", lines[1])
    assert match and int(match[1]) == len(list(first.rows)) - 2 and Path(match[2], "meta.json").is_file()
    assert list(again.rows) == list(first.rows)
    for change in ({"max_length": 64}, {"truncation": "official"}, {"combine": False}, {"values": {"name": "N"}}):
        assert _hits(_encode(tmp_path, layout, sources, caplog, **change)[1]) == 0, change
    with open(sources[0].path, "a", encoding="utf-8") as fh:  # new bytes in the first file only
        fh.write(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                          {"role": "assistant", "content": "hello"}]}) + "\n")
    lines = _encode(tmp_path, layout, sources, caplog)[1]
    assert "cache hit" not in lines[1] and "cache hit" in lines[3]
    other = AutoTokenizer.from_pretrained(tiny_tokenizer.name_or_path)
    other.chat_template = "{# another template #}" + other.chat_template  # same output, another tokenizer
    assert _hits(_encode(tmp_path, get_layout(other), sources, caplog)[1]) == 0
    off, lines = _encode(tmp_path, layout, sources, caplog, cache=False)
    assert _hits(lines) == 0 and "(cache off)" in lines[1]
    assert list(off.rows) == list(_encode(tmp_path, layout, sources)[0].rows)


def test_two_processes_give_the_same_samples_as_one(tmp_path: Path, tiny_tokenizer, varied_conversations):
    layout = get_layout(tiny_tokenizer)
    data = write_jsonl(tmp_path / "many.jsonl", varied_conversations * 3)
    one, _ = _encode(tmp_path, layout, [DataSource(path=str(data))], num_proc=1, cache=False)
    two, _ = _encode(tmp_path, layout, [DataSource(path=str(data))], num_proc=2, cache=False)
    assert len(one.rows) > 10 and list(one.rows) == list(two.rows)
    assert (one.rejected, one.result.trained_tokens) == (two.rejected, two.result.trained_tokens)
    assert (tmp_path / "rej.jsonl").is_file()


def _config(tmp_path: Path, tiny_model: Path, data: Path, **data_extra) -> dict:
    return {"model": {"name_or_path": str(tiny_model)},
            "data": {"train_file": str(data), "max_length": 64, "streaming": True, **data_extra},
            "peft": {"lora": {"r": 4, "alpha": 8, "target_modules": "all-linear"}},
            "training": {"output_dir": str(tmp_path / "run"), "max_steps": 3, "per_device_train_batch_size": 2,
                         "logging_steps": 1, "eval_steps": 3, "report_to": []}}


def test_streaming_trains_with_max_steps_and_writes_rejects(tmp_path: Path, tiny_model: Path, caplog):
    from glmtune.train.recipe import prepare_run, train

    qa = [[{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}"}]
          for i in range(30)]
    data = write_jsonl(tmp_path / "train.jsonl", qa)
    with data.open("a", encoding="utf-8") as fh:
        fh.write("{broken json\n")
    config = validate_config(_config(tmp_path, tiny_model, data, val_size=4))
    prepared = prepare_run(config, None)
    assert prepared.stream is not None and prepared.plan.value("data.streaming") is True
    assert isinstance(prepared.stream.training(4, 0), IterableDataset)
    caplog.set_level(logging.INFO, logger="glmtune")
    caplog.clear()
    result = train(config)
    lines = _messages(caplog)
    assert result.steps == 3
    run = tmp_path / "run"
    assert json.loads((run / "validation_split.json").read_text()) == [f"{data}:{i}" for i in range(1, 5)]
    rejected = [json.loads(x) for x in (run / "rejected.jsonl").read_text().splitlines()]
    assert [(r["source"], r["code"]) for r in rejected] == [(f"{data}:31", "malformed_json")]
    assert any(line.startswith("streaming: on (data.streaming set in config)") for line in lines)
    losses = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert sum(1 for x in losses if "loss" in x) == 3 and any("eval_loss" in x for x in losses)


def test_streaming_refuses_what_a_stream_cannot_do(tmp_path: Path, tiny_model: Path):
    from glmtune.train.recipe import prepare_run

    data = write_jsonl(tmp_path / "train.jsonl", [[{"role": "user", "content": "q"},
                                                   {"role": "assistant", "content": "a"}]] * 4)
    cfg = _config(tmp_path, tiny_model, data, group_by_length=True, replay_file=str(data))
    cfg["training"]["max_steps"] = -1
    cfg["data"]["train_file"] = [{"path": str(data), "weight": 2.0}]
    with pytest.raises(ConfigError) as err:
        prepare_run(validate_config(cfg), None)
    text = str(err.value)
    for needle in ("data.streaming is on (data.streaming set in config)", "training.max_steps must be > 0",
                   "data.group_by_length", "weights", "data.replay_file", "data.streaming: false"):
        assert needle in text, needle
    parquet = tmp_path / "train.parquet"
    Dataset.from_dict({"messages": [json.dumps([{"role": "user", "content": "q"}])]}).to_parquet(str(parquet))
    cfg = _config(tmp_path, tiny_model, parquet)
    with pytest.raises(ConfigError, match="streaming reads .jsonl line by line"):
        prepare_run(validate_config(cfg), None)


def test_cache_limit_keeps_the_entries_a_run_reads(tmp_path: Path, tiny_tokenizer, caplog):
    """After many encodings the limit deletes old entries, never the ones the current samples come from."""
    from glmtune.data.cache import list_cache
    from glmtune.train.dataset import limit_cache

    layout = get_layout(tiny_tokenizer)
    sources = _sources(tmp_path)
    for max_length in (48, 56, 64):  # three older, unrelated entries per file
        _encode(tmp_path, layout, sources, max_length=max_length)
    current, _ = _encode(tmp_path, layout, sources)
    assert len(current.cache_entries) == 2
    caplog.set_level(logging.INFO, logger="glmtune")
    caplog.clear()
    limit_cache(str(tmp_path / "cache"), 1e-9, [current, None])
    lines = _messages(caplog)
    left = {e.path for e in list_cache(tmp_path / "cache")}
    assert left == set(current.cache_entries)
    assert "deleted 6 least recently used entries" in lines[0]
    assert list(_encode(tmp_path, layout, sources)[0].rows) == list(current.rows)
