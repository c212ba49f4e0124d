"""Everything after the layout, for every tiny family: train, predict, chat, eval, export and serve.

One short training run per family (module-scoped); the served tool calls use a scripted generator that
emits each family's own call syntax, so parsing is tested without hoping a tiny model writes one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from glmtune.tiny.families import FAMILY_NAMES
from tests.conftest import write_jsonl

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

END = {"glm4": "<|user|>", "glm4-0414": "<|user|>", "glm-z1": "<|user|>", "glm4-moe": "<|user|>",
       "qwen2": "<|im_end|>", "qwen3": "<|im_end|>", "llama3": "<|eot_id|>"}
HI = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello! 你好"}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object",
                                                           "properties": {"city": {"type": "string"}}}}}
TOOL_CONV = [{"role": "system", "content": "", "tools": [WEATHER]}, {"role": "user", "content": "Paris?"},
             {"role": "assistant", "metadata": "get_weather", "content": '{"city": "Paris"}'}]


@pytest.fixture(scope="module")
def runs(tiny_family: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Any]:
    """``runs(family)``: (base, adapter run dir, a one-prompt file), one short LoRA run per family on plain
    and tool-call conversations."""
    from glmtune.config.loader import validate_config
    from glmtune.train.recipe import train

    done: dict[str, Any] = {}

    def get(family: str) -> Any:
        if family not in done:
            root = tmp_path_factory.mktemp(f"run-{family}")
            # a gentle rate: at 1e-2 the random tiny models' loss jumps about, and whether the reply stops came
            # down to rounding (and Qwen3 collapses onto its empty think block's newlines, "\n" forever)
            steps, rate = 60, 5e-3
            data = write_jsonl(root / "d.jsonl", [HI] * 40)  # the reply outweighs the two long tool samples
            write_jsonl(root / "tools.jsonl", [TOOL_CONV] * 2)
            write_jsonl(root / "ask.jsonl", [HI])
            cfg = validate_config({
                "model": {"name_or_path": str(tiny_family(family))},
                # The repeated samples are deliberate (repair would dedupe them), and self-replay and the base
                # anchor are off: an untrained tiny model's own "answers" and distributions are noise this test
                # does not need.
                "data": {"train_file": [str(data), str(root / "tools.jsonl")], "self_replay": 0, "repair": False},
                "training": {"output_dir": str(root / "run"), "max_steps": steps, "learning_rate": rate,
                             "base_anchor": 0,
                             "per_device_train_batch_size": 8, "logging_steps": 5, "early_stopping": False,
                             "report_to": []}})
            result = train(cfg)
            assert result.final_loss < result.first_loss
            done[family] = (tiny_family(family), root / "run", root / "ask.jsonl")
        return done[family]

    return get


def end_id(path: Path, family: str) -> int:
    """The family's end-of-turn id, looked up by string."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path).convert_tokens_to_ids(END[family])


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_train_predict_chat_eval_export_serve(runs, family, tmp_path):
    from fastapi.testclient import TestClient

    from glmtune.eval.run import evaluate
    from glmtune.export.merge import export_model
    from glmtune.infer.chat import chat_loop
    from glmtune.infer.generate import generate_replies
    from glmtune.infer.predict import predict_file
    from glmtune.layout import get_layout
    from glmtune.models import load_model, load_tokenizer
    from glmtune.serve.app import create_app
    from glmtune.serve.engine import Engine

    base, run, data = runs(family)
    end = end_id(base, family)
    assert end in json.loads((run / "generation_config.json").read_text())["eos_token_id"]

    rows = predict_file(str(base), str(data), str(tmp_path / "p.jsonl"), adapter=str(run), max_new_tokens=24)
    hi = rows[0]
    # what a random tiny model says after 40 steps is not the point (rounding decides it); that it stops on the
    # family's token and that every path below says the same is
    assert hi["finish_reason"] == "stop" and hi["stop_token"] in (END[family], load_tokenizer(str(run)).eos_token), hi
    assert hi["prediction"].strip()

    lines, shown = iter(["hi", "/exit"]), []
    history = chat_loop(str(base), adapter=str(run), max_new_tokens=24, read=lambda _: next(lines),
                        say=lambda *_: None, write=shown.append)
    assert history[-1]["role"] == "assistant" and history[-1]["content"] == hi["prediction"]

    metrics = evaluate(model=str(base), adapter=str(run), data=str(data), out=str(tmp_path / "eval"),
                       max_new_tokens=24)
    assert (tmp_path / "eval" / "metrics.json").is_file() and metrics

    merged = export_model(str(base), str(run), str(tmp_path / "merged"), dtype="fp32")
    assert end in json.loads((merged / "generation_config.json").read_text())["eos_token_id"]
    tok = load_tokenizer(str(merged))
    again = generate_replies(load_model(str(merged)), tok, get_layout(tok), [HI[:1]], 24)[0]
    assert again.text == hi["prediction"] and again.finish_reason == "stop"

    engine = Engine.load(str(merged), max_new_tokens=24, device="cpu")
    assert end in engine.stop_ids
    with TestClient(create_app(engine, None)) as client:
        resp = client.post("/v1/chat/completions", json={"model": "merged", "messages": HI[:1], "temperature": 0})
    choice = resp.json()["choices"][0]
    assert resp.status_code == 200 and choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == hi["prediction"]


# --- served tool calls in each family's own syntax (scripted generator) ------------------------------------

CALLS = {
    "glm4": 'get_weather\n{"city": "Paris"}<|observation|>',
    "glm4-0414": 'get_weather\n{"city": "Paris"}<|observation|>',
    "glm-z1": 'I need the weather.</think>\nget_weather\n{"city": "Paris"}<|observation|>',
    "glm4-moe": "\n<think>I need the weather.</think>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n"
                "<arg_value>Paris</arg_value>\n</tool_call><|observation|>",
    "qwen2": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>',
    "qwen3": '<think>\nI need the weather.\n</think>\n\n<tool_call>\n{"name": "get_weather", "arguments": '
             '{"city": "Paris"}}\n</tool_call><|im_end|>',
    "llama3": '{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>',
}
ANSWER = {"glm4": "\nIt is 21 degrees.<|user|>", "glm4-0414": "\nIt is 21 degrees.<|user|>",
          "glm-z1": "It is warm.</think>\nIt is 21 degrees.<|user|>",
          "glm4-moe": "\n<think>It is warm.</think>\nIt is 21 degrees.<|user|>",
          "qwen2": "It is 21 degrees.<|im_end|>", "qwen3": "<think>\n\n</think>\n\nIt is 21 degrees.<|im_end|>",
          "llama3": "It is 21 degrees.<|eot_id|>"}
# How the prompt of the second request shows the call and its result, in the family's own form.
ROUND_TRIP = {
    "glm4": '<|assistant|>get_weather\n{"city": "Paris"}<|observation|>\n{"temp": 21}<|assistant|>',
    "glm4-0414": '<|assistant|>get_weather \n{"city": "Paris"}<|observation|>\n{"temp": 21}<|assistant|>',
    "glm-z1": '<|assistant|>get_weather\n{"city": "Paris"}<|observation|>\n{"temp": 21}<|assistant|>\n<think>',
    # the reasoning of the turn in progress comes back as reasoning_content, and the template keeps it
    "glm4-moe": "<|assistant|>\n<think>I need the weather.</think>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n"
                "<arg_value>Paris</arg_value>\n</tool_call><|observation|>\n<tool_response>\n{\"temp\": 21}\n"
                "</tool_response><|assistant|>",
    "qwen2": '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
             '</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n{"temp": 21}\n</tool_response><|im_end|>\n'
             "<|im_start|>assistant\n",
    "qwen3": '<|im_start|>assistant\n<think>\nI need the weather.\n</think>\n\n<tool_call>\n{"name": "get_weather", '
             '"arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n{"temp": 21}\n</tool_response><|im_end|>\n'
             "<|im_start|>assistant\n",
    "llama3": '<|start_header_id|>assistant<|end_header_id|>\n\n{"name": "get_weather", "parameters": '
              '{"city": "Paris"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n\n{"temp": 21}<|eot_id|>'
              "<|start_header_id|>assistant<|end_header_id|>\n\n",
}


class Scripted:
    """A ``generate_fn`` that emits scripted replies and records each prompt."""

    def __init__(self, tokenizer: Any, replies: list[str]) -> None:
        self.tokenizer, self.replies, self.prompts = tokenizer, list(replies), []

    def __call__(self, prompt_ids: list[int], params: Any, on_token: Callable[[int], bool]) -> None:
        self.prompts.append(self.tokenizer.decode(prompt_ids))
        for tid in self.tokenizer(self.replies.pop(0), add_special_tokens=False)["input_ids"]:
            if not on_token(tid):
                return


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_served_tool_call_round_trip_in_the_family_syntax(tiny_family, family):
    from fastapi.testclient import TestClient
    from transformers import AutoTokenizer

    from glmtune.serve.app import create_app
    from glmtune.serve.engine import Engine

    tok = AutoTokenizer.from_pretrained(tiny_family(family))
    gen = Scripted(tok, [CALLS[family], ANSWER[family], CALLS[family]])
    engine = Engine(tok, model_name="scripted", generate_fn=gen)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    with TestClient(create_app(engine, None)) as client:
        resp = client.post("/v1/chat/completions", json={"messages": messages, "tools": [WEATHER]}).json()
        choice = resp["choices"][0]
        assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
        (call,) = choice["message"]["tool_calls"]
        assert call["function"]["name"] == "get_weather"
        assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
        assert "get_weather" in gen.prompts[0] and "Weather in a city" in gen.prompts[0]  # schema in the prompt
        messages += [choice["message"], {"role": "tool", "tool_call_id": call["id"], "content": '{"temp": 21}'}]
        resp = client.post("/v1/chat/completions", json={"messages": messages, "tools": [WEATHER]}).json()
        assert resp["choices"][0]["finish_reason"] == "stop"
        assert resp["choices"][0]["message"]["content"].endswith("It is 21 degrees.")
        assert gen.prompts[1].endswith(ROUND_TRIP[family])
        # without tools offered, the same reply is plain text
        resp = client.post("/v1/chat/completions", json={"messages": messages[:1]}).json()
        assert resp["choices"][0]["finish_reason"] == "stop" and "get_weather" in resp["choices"][0]["message"]["content"]


def test_qwen_parallel_calls_and_non_calls(tiny_family):
    from transformers import AutoTokenizer

    from glmtune.layout import get_layout
    from glmtune.serve.engine import ReplyBuilder
    from glmtune.serve.tool_syntax import derive_syntax

    tok = AutoTokenizer.from_pretrained(tiny_family("qwen2"))
    syntax = derive_syntax(get_layout(tok), tok)
    assert syntax is not None and (syntax.prefix, syntax.suffix) == ("<tool_call>", "</tool_call>")
    two = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
           '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>')
    calls = syntax.parse(two, ["get_weather"])
    assert calls is not None and [json.loads(c.function.arguments)["city"] for c in calls] == ["Paris", "Rome"]
    assert syntax.parse(two.replace("get_weather", "other"), ["get_weather"]) is None  # undeclared name
    assert syntax.parse('<tool_call>\n{"name": "get_weather", "arguments": [1]}\n</tool_call>', ["get_weather"]) is None
    assert syntax.classify("<tool", ["get_weather"]) is None and syntax.classify("Sure", ["get_weather"]) == "text"

    builder = ReplyBuilder(tok, [tok.convert_tokens_to_ids("<|im_end|>")], 64, tool_names=["get_weather"],
                           syntax=syntax)
    for tid in tok("<tool_call>\n{not json}\n</tool_call>", add_special_tokens=False)["input_ids"]:
        builder.add(tid)
    builder.close()  # a broken call comes back as text, not lost
    assert builder.tool_calls is None and builder.content == "<tool_call>\n{not json}\n</tool_call>"


def test_llama3_template_without_parallel_calls_still_parses_one(tiny_family):
    from transformers import AutoTokenizer

    from glmtune.layout import get_layout
    from glmtune.serve.tool_syntax import derive_syntax

    tok = AutoTokenizer.from_pretrained(tiny_family("llama3"))
    syntax = derive_syntax(get_layout(tok), tok)
    assert syntax is not None and (syntax.prefix, syntax.name_key, syntax.args_key) == ("", "name", "parameters")
    assert syntax.classify(" {", ["f"]) == "tool" and syntax.classify("Hi", ["f"]) == "text"
    assert syntax.parse('{"name": "f", "parameters": {"x": 1}}', ["f"])[0].function.name == "f"
