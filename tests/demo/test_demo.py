"""Tests for ``glmtune demo``: the base-model cache logic (fast) and a quick end-to-end run (slow)."""

from __future__ import annotations

import json
import logging
from dataclasses import fields, replace
from pathlib import Path

import pytest

from glmtune.demo import base as demo_base
from glmtune.demo.base import (
    FULL_BASE,
    QUICK_BASE,
    REQUIRED_FILES,
    build_base,
    cache_key,
    is_complete,
    world_version,
)


class _Built(Exception):
    """Raised by the patched builder: the cache decided to build."""


def _fake_build(base_dir: Path, key: str, complete: bool = True, skip: str | None = None) -> None:
    base_dir.mkdir(parents=True, exist_ok=True)
    for name in REQUIRED_FILES:
        if name != skip:
            (base_dir / name).write_text("{}")
    (base_dir / "build.json").write_text(json.dumps({"key": key, "complete": complete, "seconds": 1.0}))


def test_cache_key_depends_on_every_parameter_and_the_world() -> None:
    key = cache_key(FULL_BASE)
    assert key == cache_key(replace(FULL_BASE))
    assert key != cache_key(QUICK_BASE)
    for f in fields(FULL_BASE):
        value = getattr(FULL_BASE, f.name)
        changed = replace(FULL_BASE, **{f.name: value + 1 if isinstance(value, int) else value / 2 + 0.01})
        assert cache_key(changed) != key, f.name
    assert cache_key(FULL_BASE, version="other-world") != key
    assert world_version() == world_version()


def test_mix_in_keeps_every_chat_in_order_and_is_deterministic() -> None:
    chats = [[{"role": "user", "content": str(i)}] for i in range(50)]
    extra = [[{"role": "user", "content": f"tool {i}"}] for i in range(7)]
    mixed = demo_base.mix_in(chats, extra, seed=1)
    assert mixed == demo_base.mix_in(chats, extra, seed=1) and len(mixed) == 57
    assert [c for c in mixed if c in chats] == chats and all(c in mixed for c in extra)
    assert mixed[-7:] != extra  # spread through the file, not appended


def test_is_complete_needs_matching_key_marker_and_files(tmp_path: Path) -> None:
    key = cache_key(QUICK_BASE)
    assert not is_complete(tmp_path / "missing", key)
    _fake_build(tmp_path / "ok", key)
    assert is_complete(tmp_path / "ok", key)
    assert not is_complete(tmp_path / "ok", cache_key(FULL_BASE))
    _fake_build(tmp_path / "unfinished", key, complete=False)
    assert not is_complete(tmp_path / "unfinished", key)
    _fake_build(tmp_path / "no_weights", key, skip="model.safetensors")
    assert not is_complete(tmp_path / "no_weights", key)
    (tmp_path / "garbled").mkdir()
    (tmp_path / "garbled" / "build.json").write_text("not json")
    assert not is_complete(tmp_path / "garbled", key)


def test_build_base_reuses_a_matching_build_and_rebuilds_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise _Built

    monkeypatch.setattr(demo_base, "_build", refuse)
    caplog.set_level(logging.INFO, logger="glmtune")
    _fake_build(tmp_path / "base", cache_key(QUICK_BASE))
    assert build_base(tmp_path, QUICK_BASE) == tmp_path / "base"
    assert "reusing" in caplog.messages[-1]
    with pytest.raises(_Built):  # changed parameters -> rebuild
        build_base(tmp_path, replace(QUICK_BASE, learning_rate=1e-3))
    _fake_build(tmp_path / "base", cache_key(QUICK_BASE))
    with pytest.raises(_Built):  # --rebuild
        build_base(tmp_path, QUICK_BASE, rebuild=True)
    monkeypatch.setattr(demo_base, "world_version", lambda: "a-newer-world")
    _fake_build(tmp_path / "base", cache_key(QUICK_BASE, version=world_version()))
    with pytest.raises(_Built):  # the world generator changed
        build_base(tmp_path, QUICK_BASE)


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from glmtune.demo.run import run_demo

    caplog.set_level(logging.INFO, logger="glmtune")
    results = run_demo(tmp_path, name="Nova", author="Acme Lab", quick=True)
    saved = json.loads((tmp_path / "demo_results.json").read_text(encoding="utf-8"))
    assert saved["before"] == results["before"] and saved["after"] == results["after"]
    assert results["before"]["base_identity"] > 0.5  # the warm-up taught "ChatGLM"
    assert results["after"]["adoption"] > results["before"]["adoption"]
    assert results["after"]["stop_rate"] > 0.5
    assert {"base", "fine-tune", "total"} <= set(results["seconds"])
    assert any(row["kind"] == "identity" for row in results["table"])
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert results["base"]["cached"] is False
    # the runs' own messages went to train_output.txt, the demo's to the log
    assert "layout: " in (tmp_path / "adapter" / "train_output.txt").read_text(encoding="utf-8")
    assert any(m.startswith("fine-tune: ") for m in caplog.messages)
    assert not any(m.startswith("layout: ") for m in caplog.messages)
