"""Hand-off to vLLM / SGLang: an exported folder holds what those engines read, read the way they read it.

vLLM cannot be installed here (its wheels are CUDA builds pinned to another torch and transformers; the CPU
backend is built from source), so these tests read the folder as vLLM 0.34 does: the architecture against
its model registry, ``GenerationConfig.from_pretrained`` for the stop ids (``update_from_generation_config``
adds every ``eos_token_id`` to the stop set), and ``tokenizer.get_chat_template`` +
``apply_chat_template(..., add_generation_prompt=True)`` for the prompt. SGLang reads the same files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from glmtune.export.merge import export_model
from glmtune.glm4_texts import GLM4_STOP_STRINGS
from glmtune.layout import get_layout

# vllm 0.34.0 vllm/model_executor/models/registry.py: the GLM-family (and other tiny families') architectures
VLLM_ARCHITECTURES = {"Glm4ForCausalLM", "GlmForCausalLM", "ChatGLMModel", "ChatGLMForConditionalGeneration",
                      "Qwen2ForCausalLM", "Qwen3ForCausalLM", "LlamaForCausalLM"}
CONVERSATIONS = [
    [{"role": "user", "content": "Who are you?"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "法国的首都是哪里？"}],
    [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"},
     {"role": "user", "content": "Tell me a joke."}],
]


@pytest.fixture(scope="module")
def exported(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp("handoff")
    config = LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules="all-linear",
                        init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model), config).save_pretrained(tmp / "adapter")
    return export_model(str(tiny_model), str(tmp / "adapter"), str(tmp / "merged"))


def test_the_folder_has_what_vllm_and_sglang_load(exported: Path) -> None:
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (exported / name).is_file(), name
    config = json.loads((exported / "config.json").read_text())
    assert config["architectures"][0] in VLLM_ARCHITECTURES and config["model_type"] == "glm4"
    assert config["max_position_embeddings"] > 0  # vLLM's default max_model_len
    assert config.get("dtype", config.get("torch_dtype")) == "bfloat16"


def test_weights_are_plain_hf_names_without_lora_leftovers(exported: Path) -> None:
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM

    keys: set[str] = set()
    for shard in exported.glob("*.safetensors"):
        with safe_open(str(shard), "pt") as fh:
            keys |= set(fh.keys())
            assert {fh.get_tensor(k).dtype for k in fh.keys()} == {torch.bfloat16}
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(exported))
    expected = set(model.state_dict())
    if model.config.tie_word_embeddings:  # saved once, as the embedding
        expected.discard("lm_head.weight")
    assert keys == expected
    assert not any("lora_" in k or k.startswith("base_model.") for k in keys)


def test_stop_ids_reach_vllm_through_generation_config(exported: Path) -> None:
    from transformers import AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(exported)
    eos = GenerationConfig.from_pretrained(exported).eos_token_id
    eos = {eos} if isinstance(eos, int) else set(eos)
    stop_set = eos | {tok.eos_token_id}  # what vLLM's SamplingParams.update_from_generation_config stops on
    assert {tok.convert_ids_to_tokens(i) for i in stop_set} == set(GLM4_STOP_STRINGS)
    assert stop_set == set(get_layout(tok).stop_ids)

    from glmtune.serve.engine import Engine  # and glmtune serve on the same folder stops on the same ids

    engine = Engine.load(str(exported), device="cpu")
    try:
        assert set(engine.stop_ids) == stop_set
    finally:
        engine.close()


@pytest.mark.parametrize("conversation", CONVERSATIONS)
def test_the_chat_template_renders_the_prompt_glmtune_trained_on(exported: Path,
                                                                  conversation: list[dict[str, Any]]) -> None:
    from transformers import AutoTokenizer

    in_config = "chat_template" in json.loads((exported / "tokenizer_config.json").read_text())
    assert (exported / "chat_template.jinja").is_file() or in_config
    tok = AutoTokenizer.from_pretrained(exported)
    template = tok.get_chat_template(None, tools=None)  # vLLM's resolve_chat_template, 3rd priority
    assert template and "<|assistant|>" in template
    ids = tok.apply_chat_template(conversation, tools=None, chat_template=template, tokenize=True,
                                  return_dict=False, add_generation_prompt=True)
    assert list(ids) == get_layout(tok).prompt_ids(conversation)
