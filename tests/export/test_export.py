"""Export: the merged folder loads with plain transformers and answers exactly like base + adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from glmtune.errors import UserError
from glmtune.export.merge import export_model
from glmtune.infer.generate import generate_replies
from glmtune.layout import get_layout
from glmtune.models import load_model, load_tokenizer


def random_adapter(tiny_model: Path, out: Path, method: str) -> Path:
    from peft import LoraConfig, PrefixTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    config = (LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
              if method == "lora" else PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(out)
    return out


PROMPTS = [[{"role": "user", "content": "Who are you?"}], [{"role": "user", "content": "法国的首都是哪里？"}]]


def test_lora_export_matches_base_plus_adapter(tmp_path, tiny_model):
    adapter = random_adapter(tiny_model, tmp_path / "adapter", "lora")
    out = export_model(str(tiny_model), str(adapter), str(tmp_path / "merged"), dtype="fp32")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    layout = get_layout(tok)
    expected = generate_replies(load_model(str(tiny_model), adapter=str(adapter)), tok, layout, PROMPTS, 12)
    got = generate_replies(merged, tok, layout, PROMPTS, 12)
    assert [g.text for g in got] == [g.text for g in expected]
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["eos_token_id"] == layout.stop_ids
    assert list(out.glob("*.safetensors"))
    assert "base_model:" in (out / "README.md").read_text()


def test_prefix_export_keeps_adapter_beside_base(tmp_path, tiny_model):
    adapter = random_adapter(tiny_model, tmp_path / "adapter", "ptuning")
    out = export_model(str(tiny_model), str(adapter), str(tmp_path / "exp"), dtype="fp32")
    assert (out / "adapter" / "adapter_config.json").is_file()
    tok = load_tokenizer(str(out))
    got = generate_replies(load_model(str(out), adapter=str(out / "adapter")), tok, get_layout(tok), PROMPTS, 8)
    want = generate_replies(load_model(str(tiny_model), adapter=str(adapter)), tok, get_layout(tok), PROMPTS, 8)
    assert [g.text for g in got] == [g.text for g in want]


def test_export_refuses_a_non_empty_folder_and_a_missing_adapter(tmp_path, tiny_model):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("keep me")
    adapter = random_adapter(tiny_model, tmp_path / "adapter", "lora")
    with pytest.raises(UserError, match="not empty"):
        export_model(str(tiny_model), str(adapter), str(tmp_path / "busy"))
    with pytest.raises(UserError, match="adapter folder not found"):
        export_model(str(tiny_model), str(tmp_path / "nope"), str(tmp_path / "o"))


@pytest.mark.parametrize("family", ["glm-z1", "glm4-moe", "qwen3"])
def test_export_writes_the_family_stop_ids(tmp_path, tiny_family, family):
    base = tiny_family(family)
    adapter = random_adapter(base, tmp_path / "adapter", "lora")
    out = export_model(str(base), str(adapter), str(tmp_path / "merged"), dtype="fp32")
    tok = load_tokenizer(str(out))
    layout = get_layout(tok)
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == layout.stop_ids
    assert json.loads((out / "config.json").read_text())["eos_token_id"] == layout.stop_ids
    card = (out / "README.md").read_text()
    assert all(f"`{token}`" in card for token in tok.convert_ids_to_tokens(layout.stop_ids))
