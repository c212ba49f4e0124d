"""Shared fixtures: one tiny GLM-4 model per test session, and paths to fixtures and shared data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def tokenized_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tokenized-data cache of this test session (never the user's ~/.cache); subprocesses inherit it."""
    path = tmp_path_factory.mktemp("glmtune-cache")
    os.environ["GLMTUNE_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random GLM-4 model + tokenizer, built once per session."""
    from glmtune.tiny.model import make_tiny
    from glmtune.world import tokenizer_corpus

    return make_tiny(tmp_path_factory.mktemp("tiny") / "model", seed=0, corpus=tokenizer_corpus(0))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model: Path):
    """The tiny model's tokenizer, loaded the way users load it."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture()
def varied_conversations() -> list[list[dict]]:
    """Multi-turn, system, tools, function calls, observations, loss: false, unicode."""
    lines = (FIXTURES / "varied.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["messages"] for line in lines if line.strip()]


def write_jsonl(path: Path, conversations: list[list[dict]]) -> Path:
    """Write conversations as GLM-4 messages JSONL."""
    with path.open("w", encoding="utf-8") as fh:
        for messages in conversations:
            fh.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_family(tmp_path_factory: pytest.TempPathFactory):
    """``tiny_family(name)``: the tiny model of a family (glm4, qwen2, ...), each built once per session."""
    from glmtune.tiny.model import make_tiny
    from glmtune.world import tokenizer_corpus

    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = make_tiny(tmp_path_factory.mktemp(f"family-{name}") / "model", seed=0, family=name,
                                    corpus=tokenizer_corpus(0))
        return built[name]

    return get
