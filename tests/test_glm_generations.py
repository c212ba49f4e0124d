"""The current GLM generation end to end: tokenize, train, predict, export and serve, per family.

For the tiny ``glm-z1`` and ``glm4-moe`` families and for tiny models built around each real reference
template (glm-4-9b-chat, GLM-4-9B-0414, GLM-Z1-9B-0414, GLM-4.5, GLM-4.6; skipped when ../shared is absent):
a small thinking + tool-calling file is tokenized and trained on for a few steps, predict and the server run
on a model forced to write each generation's own reply (reasoning, a tool call in its syntax, the family's stop
token), and the export stops on the family's stop ids. The server is driven by the official ``openai`` client.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_jsonl
from tests.infer.scripted import Forced
from tests.test_family_downstream import ROUND_TRIP

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("openai")

from tests.serve.test_serve import Server  # noqa: E402

TEMPLATES = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "templates"
NO_TEMPLATES = pytest.mark.skipif(not TEMPLATES.is_dir(), reason=f"the reference templates are not at {TEMPLATES}")
# model -> the generation its template's behaviour says (tiny families by name, the rest from a template file)
GENERATION = {"glm-z1": "glm-z1", "glm4-moe": "glm4-moe", "glm-4-9b-chat": "glm4", "GLM-4-9B-0414": "glm4-0414",
              "GLM-Z1-9B-0414": "glm-z1", "GLM-4.5": "glm4-moe", "GLM-4.6": "glm4-moe"}
MODELS = [pytest.param(name, marks=[] if name in ("glm-z1", "glm4-moe") else [NO_TEMPLATES]) for name in GENERATION]

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object",
                                                           "properties": {"city": {"type": "string"}}}}}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
RECORDS = [
    {"messages": [{"role": "user", "content": "hi"},
                  {"role": "assistant", "reasoning_content": "A greeting.", "content": "Hello!"}]},
    {"tools": [WEATHER], "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "reasoning_content": "I need the weather.", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
        {"role": "assistant", "reasoning_content": "It is warm.", "content": "It is 21 degrees."}]},
]
THINKS = {"glm4": False, "glm4-0414": False, "glm-z1": True, "glm4-moe": True}
# What each generation writes after its generation prompt: a tool call, then the answer once the result is in.
REPLIES = {
    "glm4": ['get_weather\n{"city": "Paris"}<|observation|>', "\nIt is 21 degrees.<|user|>"],
    "glm4-0414": ['get_weather\n{"city": "Paris"}<|observation|>', "\nIt is 21 degrees.<|user|>"],
    "glm-z1": ['I need the weather.</think>\nget_weather\n{"city": "Paris"}<|observation|>',
               "It is warm.</think>\nIt is 21 degrees.<|user|>"],
    "glm4-moe": ["\n<think>I need the weather.</think>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n"
                 "<arg_value>Paris</arg_value>\n</tool_call><|observation|>",
                 "\n<think>It is warm.</think>\nIt is 21 degrees.<|user|>"],
}

# How the second request's prompt ends: the call and its result in the generation's own form (shared table).


@pytest.fixture(scope="session")
def generation_model(tiny_family: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
                     ) -> Callable[[str], Path]:
    """``generation_model(name)``: a tiny family, or a tiny model around the reference template ``name``."""
    from glmtune.cli.commands import family_from_template
    from glmtune.tiny.model import make_tiny
    from glmtune.world import tokenizer_corpus

    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name in ("glm-z1", "glm4-moe"):
            return tiny_family(name)
        if name not in built:
            corpus = tokenizer_corpus(0)
            family = family_from_template((TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8"), None, corpus)
            built[name] = make_tiny(tmp_path_factory.mktemp(f"template-{name}") / "model", seed=0, family=family,
                                    corpus=corpus)
        return built[name]

    return get


def tokenize_and_train(base: Path, root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    """``glmtune data tokenize`` on the thinking + tool file, then a few LoRA steps; (run folder, tokenize output)."""
    from glmtune.cli.main import main as cli_main
    from glmtune.config.loader import validate_config
    from glmtune.train.recipe import train

    data = root / "data.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS * 4), encoding="utf-8")
    capsys.readouterr()
    assert cli_main(["data", "tokenize", "--model", str(base), "--data", str(data), "--out", str(root / "t.jsonl"),
                     "--no-cache"]) == 0
    shown = capsys.readouterr().out
    samples = [json.loads(line) for line in (root / "t.jsonl").read_text().splitlines()]
    assert len(samples) == 8 and all(any(x != -100 for x in s["labels"]) for s in samples)
    cfg = validate_config({
        "model": {"name_or_path": str(base)},
        "data": {"train_file": str(data), "self_replay": 0, "repair": False, "val_size": 0},
        "training": {"output_dir": str(root / "run"), "max_steps": 3, "learning_rate": 1e-3, "base_anchor": 0,
                     "per_device_train_batch_size": 4, "logging_steps": 1, "early_stopping": False,
                     "report_to": []}})
    train(cfg)
    return root / "run", shown


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_tokenize_train_predict_export_serve(name: str, generation_model: Callable[[str], Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from glmtune.export.merge import export_model
    from glmtune.infer import predict
    from glmtune.layout import get_layout
    from glmtune.models import load_tokenizer

    base = generation_model(name)
    tok = load_tokenizer(str(base))
    layout = get_layout(tok)
    generation = GENERATION[name]
    assert layout.name == generation and layout.thinks == THINKS[generation]
    stops = tok.convert_ids_to_tokens(layout.stop_ids)
    assert sorted(stops) == sorted(["<|endoftext|>", "<|user|>", "<|observation|>"])
    run, shown = tokenize_and_train(base, tmp_path, capsys)
    assert "served tool calls:" in shown and "not recognised" not in shown

    # predict: the answer alone is the prediction, the reasoning apart, stopped on the family's stop token
    real_load = predict.load_model
    monkeypatch.setattr(predict, "load_model", lambda *a, **k: Forced(real_load(*a, **k), tok, REPLIES[generation][1:]))
    ask = write_jsonl(tmp_path / "ask.jsonl", [[{"role": "user", "content": "And now?"}]])
    (row,) = predict.predict_file(str(base), str(ask), str(tmp_path / "p.jsonl"), adapter=str(run), max_new_tokens=32)
    assert (row["prediction"], row["finish_reason"], row["stop_token"]) == ("It is 21 degrees.", "stop", "<|user|>")
    assert row.get("reasoning", "") == ("It is warm." if layout.thinks else "")

    merged = export_model(str(base), str(run), str(tmp_path / "merged"), dtype="fp32")
    assert json.loads((merged / "generation_config.json").read_text())["eos_token_id"] == layout.stop_ids
    assert get_layout(load_tokenizer(str(merged))).stop_ids == layout.stop_ids
    serve_round_trip(merged, generation)


def serve_round_trip(merged: Path, generation: str) -> None:
    """A tool call and its answer through the official client, streamed and not, on the exported model."""
    from glmtune.serve.engine import Engine

    engine = Engine.load(str(merged), max_new_tokens=48, device="cpu", model_name="m")
    forced = Forced(engine.model, engine.tokenizer, REPLIES[generation] + REPLIES[generation][:1])
    engine.model = forced
    thinks = THINKS[generation]
    server = Server(engine)
    try:
        client = server.client()
        messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
        reply = client.chat.completions.create(model="m", messages=messages, tools=[WEATHER], temperature=0)
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        (call,) = choice.message.tool_calls
        assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
        assert getattr(choice.message, "reasoning_content", None) == ("I need the weather." if thinks else None)
        assert "get_weather" in forced.prompts[0] and "Weather in a city" in forced.prompts[0]

        messages += [choice.message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'}]
        again = client.chat.completions.create(model="m", messages=messages, tools=[WEATHER], temperature=0)
        assert again.choices[0].finish_reason == "stop" and again.choices[0].message.content == "It is 21 degrees."
        assert forced.prompts[1].endswith(ROUND_TRIP[generation])

        chunks = list(client.chat.completions.create(model="m", messages=messages[:1], tools=[WEATHER],
                                                     temperature=0, stream=True))
        kinds = [k for c in chunks for k in ("reasoning_content", "content", "tool_calls")
                 if c.choices and getattr(c.choices[0].delta, k, None)]
        assert kinds[-1] == "tool_calls" and ("reasoning_content" in kinds) == thinks
        assert "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks
                       if c.choices) == ("I need the weather." if thinks else "")
    finally:
        server.stop()
