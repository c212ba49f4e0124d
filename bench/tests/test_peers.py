"""bench/peers: GLM-4 conversations converted for LLaMA-Factory (sharegpt) and TRL (prompt-completion), and runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.peers import llamafactory as lf
from bench.peers import trl as trl_peer
from bench.peers.convert import ConversionError, convert_file
from bench.peers.run import PeerMissing, PeerSpec, run_peer, venv_python, venvs_dir
from tests.conftest import write_jsonl

TOOL = {"type": "function", "function": {"name": "get_weather", "description": "查询城市天气",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
TOOL_CONV = [
    {"role": "system", "content": "", "tools": [TOOL]},
    {"role": "user", "content": "北京今天天气怎么样？"},
    {"role": "assistant", "metadata": "get_weather", "content": "{\"city\": \"北京\"}"},
    {"role": "observation", "content": "{\"weather\": \"晴\", \"temp\": 25}"},
    {"role": "assistant", "content": "北京今天晴，气温25度。"},
]


def test_sharegpt_tool_conversation() -> None:
    record = lf.to_sharegpt(TOOL_CONV)
    assert record["conversations"] == [
        {"from": "human", "value": "北京今天天气怎么样？"},
        {"from": "function_call", "value": "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"北京\"}}"},
        {"from": "observation", "value": "{\"weather\": \"晴\", \"temp\": 25}"},
        {"from": "gpt", "value": "北京今天晴，气温25度。"},
    ]
    assert json.loads(record["tools"]) == [TOOL]
    assert record["system"] == ""  # the system message carried only the tools


def test_sharegpt_system_prompt_and_turns() -> None:
    conv = [{"role": "system", "content": "You are Nova."}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "bye"},
            {"role": "assistant", "content": "Bye."}]
    record = lf.to_sharegpt(conv)
    assert record["system"] == "You are Nova."
    assert [t["from"] for t in record["conversations"]] == ["human", "gpt", "human", "gpt"]
    assert record["tools"] == ""


@pytest.mark.parametrize(("conv", "reason"), [
    ([{"role": "user", "content": "a"}, {"role": "system", "content": "late"}, {"role": "assistant", "content": "b"}],
     "system message after"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}],
     "turn 2"),
    ([{"role": "user", "content": "a"}], "does not end"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "metadata": "f", "content": "not json"}], "not JSON"),
])
def test_sharegpt_refuses_what_it_cannot_express(conv: list[dict], reason: str) -> None:
    with pytest.raises(ConversionError, match=reason):
        lf.to_sharegpt(conv)


def test_dataset_info_and_train_args(tmp_path: Path) -> None:
    info = lf.dataset_info("train.json")[lf.DATASET]
    assert info["formatting"] == "sharegpt" and info["tags"]["function_tag"] == "function_call"
    spec = PeerSpec(model_dir="m", train_jsonl="d", out_dir="o", target_modules=["q_proj", "v_proj"], max_steps=7,
                    extra={"packing": True})
    args = lf.train_args(spec, tmp_path, tmp_path / "out", bf16=False)
    assert args["template"] == "glm4" and args["lora_target"] == "q_proj,v_proj"
    assert args["max_steps"] == 7 and args["packing"] is True and args["report_to"] == "none"
    assert lf.train_args(PeerSpec("m", "d", "o"), tmp_path, tmp_path, False)["lora_target"] == "all"


def test_prompt_completion_tool_conversation() -> None:
    record = trl_peer.to_prompt_completion(TOOL_CONV)
    assert record["prompt"] == TOOL_CONV[:4]
    assert record["completion"] == [TOOL_CONV[4]]
    assert json.loads(record["tools"]) == [TOOL]


def test_prompt_completion_skips_untrained_last_reply() -> None:
    conv = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"}, {"role": "assistant", "content": "d", "loss": False}]
    record = trl_peer.to_prompt_completion(conv)
    assert record["completion"] == [{"role": "assistant", "content": "b"}]
    assert record["tools"] == "null"
    with pytest.raises(ConversionError, match="no assistant reply"):
        trl_peer.to_prompt_completion([{"role": "user", "content": "a"}])


def test_prompt_completion_renders_like_the_conversation(tiny_tokenizer) -> None:
    """TRL renders prompt + completion with the model's template: the ids equal the original conversation's."""
    record = trl_peer.to_prompt_completion(TOOL_CONV)
    joined = tiny_tokenizer.apply_chat_template(record["prompt"] + record["completion"], tokenize=False)
    assert joined == tiny_tokenizer.apply_chat_template(TOOL_CONV, tokenize=False)
    prompt = tiny_tokenizer.apply_chat_template(record["prompt"], tokenize=False, add_generation_prompt=True)
    assert joined.startswith(prompt) and joined[len(prompt):] == "\n北京今天晴，气温25度。"


def test_convert_file_reports_skipped(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [TOOL_CONV, [{"role": "user", "content": "only a question"}]])
    records, skipped = convert_file(path, lf.to_sharegpt)
    assert len(records) == 1 and skipped == [{"conversation": 2, "reason": skipped[0]["reason"]}]
    assert "does not end" in skipped[0]["reason"]


def test_missing_venv_says_how_to_make_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLMTUNE_BENCH_VENVS", str(tmp_path))
    with pytest.raises(PeerMissing, match="run bench/peers/setup.sh"):
        venv_python("trl")
    with pytest.raises(ValueError, match="unknown peer"):
        venv_python("axolotl")


def test_setup_script_venv_sees_the_running_interpreters_torch(tmp_path: Path) -> None:
    """A peer venv made from a virtualenv's python sees that virtualenv's torch (not the base interpreter's)."""
    import subprocess
    import sys

    import torch

    setup = Path(__file__).resolve().parents[2] / "bench" / "peers" / "setup.sh"
    env = {**os.environ, "PYTHON": sys.executable, "GLMTUNE_BENCH_VENVS": str(tmp_path)}
    done = subprocess.run(["bash", str(setup), "check"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"sees torch {torch.__version__}" in done.stdout
    peer = tmp_path / "check" / "bin" / "python"
    where = subprocess.run([str(peer), "-c", "import sys, torch; print(torch.__file__); print(sys.prefix)"],
                           capture_output=True, text=True, timeout=120, check=True).stdout.split()
    assert Path(where[0]).resolve() == Path(torch.__file__).resolve()  # the outer torch itself, not a copy
    assert where[1] == str(tmp_path / "check")
    leaked = subprocess.run([str(peer), "-c", "import transformers"], capture_output=True, text=True, timeout=120)
    assert leaked.returncode != 0 and "No module named 'transformers'" in leaked.stderr  # only torch is shared
    assert (tmp_path / "torch-constraint.txt").read_text().strip() == f"torch=={torch.__version__}"


@pytest.mark.slow
@pytest.mark.parametrize("peer", ["trl", "llamafactory"])
def test_peer_trains_and_adapter_loads(peer: str, tiny_model: Path, tmp_path: Path) -> None:
    if not (venvs_dir() / peer / "bin" / "python").exists():
        pytest.skip(f"the {peer} venv is missing: run bench/peers/setup.sh")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    data = write_jsonl(tmp_path / "d.jsonl", [TOOL_CONV, TOOL_CONV[1:2] + [{"role": "assistant", "content": "ok"}]])
    spec = PeerSpec(model_dir=str(tiny_model), train_jsonl=str(data), out_dir=str(tmp_path / peer), max_steps=2,
                    per_device_batch=2, learning_rate=1e-3, max_length=256, device="cpu")
    result = run_peer(peer, spec)
    assert result.ok, Path(result.log_path).read_text()[-3000:]
    assert [s for s, _ in result.losses] == [1, 2] and result.trained_tokens > 0 and result.peak_rss_mb > 50
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), result.adapter_dir)
    assert any("lora_" in n for n, _ in model.named_parameters())
