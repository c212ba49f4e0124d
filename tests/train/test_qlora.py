"""QLoRA (``model.quantization``): config plumbing and errors that name the key everywhere; where bitsandbytes runs
on this machine's CPU, train -> predict -> export end to end on the tiny model (the merge goes into the
unquantised base)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from glmtune.config.loader import ConfigError, validate_config
from glmtune.errors import UserError
from glmtune.quantization import (
    bnb_config,
    check_backend,
    check_quantization,
    checkpoint_quantization,
    trained_quantization,
)
from tests.conftest import write_jsonl


def _config(tiny_model: Path | str = "m", **model: str) -> dict:
    return {"model": {"name_or_path": str(tiny_model), **model}, "data": {"train_file": "t.jsonl"}}


def test_config_key_takes_4bit_8bit_none_and_names_a_bad_value() -> None:
    assert validate_config(_config()).model.quantization == "none"
    assert validate_config(_config(quantization="4bit")).model.quantization == "4bit"
    with pytest.raises(ConfigError, match="model.quantization"):
        validate_config(_config(quantization="3bit"))


def test_only_lora_trains_on_a_quantized_base() -> None:
    with pytest.raises(ConfigError, match="model.quantization: 4bit .* peft.method is full"):
        check_quantization("4bit", "full")
    check_quantization("none", "full")


def test_missing_bitsandbytes_names_the_key_and_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(UserError, match=r"model.quantization: 8bit needs bitsandbytes.*glmtune\[qlora\]"):
        check_quantization("8bit", "lora")


def test_a_backend_that_cannot_quantize_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CUDA and no CPU backend: the probe's failure becomes an error about model.quantization."""
    bnb_f = pytest.importorskip("bitsandbytes.functional")

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("no kernel registered for device cpu")

    monkeypatch.setattr(bnb_f, "quantize_4bit", broken)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(UserError, match="model.quantization: 4bit: bitsandbytes cannot run on this CPU"):
        check_backend("4bit")
    check_backend("none")  # nothing to probe


def test_bitsandbytes_config_is_nf4_double_quant_with_the_compute_dtype() -> None:
    import torch

    pytest.importorskip("bitsandbytes")
    q = bnb_config("4bit", torch.bfloat16)
    assert (q.load_in_4bit, q.bnb_4bit_quant_type, q.bnb_4bit_use_double_quant) == (True, "nf4", True)
    assert q.bnb_4bit_compute_dtype == torch.bfloat16
    assert bnb_config("8bit", torch.float32).load_in_8bit


def test_start_of_a_run_refuses_before_anything_heavy(tiny_model: Path, tmp_path: Path) -> None:
    """check_gpu_options: a quantized full fine-tune, and Liger kernels without a GPU, name their keys."""
    import torch

    from glmtune.train.gpu_options import check_gpu_options

    with pytest.raises(ConfigError, match="model.quantization"):
        check_gpu_options(validate_config({**_config(tiny_model, quantization="4bit"), "peft": {"method": "full"}}))
    if torch.cuda.is_available():
        pytest.skip("Liger's CPU refusal needs a machine without CUDA")
    liger = validate_config({**_config(tiny_model), "training": {"liger_kernels": True}})
    with pytest.raises(ConfigError, match="training.liger_kernels: .*no"):
        check_gpu_options(liger)


def test_export_refuses_a_quantized_checkpoint_and_reads_what_a_run_trained_on(tmp_path: Path) -> None:
    from glmtune.export.merge import check_unquantised_base

    base = tmp_path / "base-bnb-4bit"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "glm4", "quantization_config": {
        "quant_method": "bitsandbytes", "load_in_4bit": True}}))
    assert checkpoint_quantization(str(base)) == "bitsandbytes 4bit"
    with pytest.raises(UserError, match="quantized checkpoint \\(bitsandbytes 4bit\\).*original bf16/fp32 base"):
        check_unquantised_base(str(base), str(tmp_path))
    run = tmp_path / "run"
    run.mkdir()
    assert trained_quantization(str(run)) == "none"
    (run / "config.yaml").write_text("model:\n  name_or_path: x\n  quantization: 4bit\n")
    assert trained_quantization(str(run)) == "4bit"


def _bitsandbytes_runs_here() -> str:
    """Empty when 4-bit layers run on this machine, else why not (the end-to-end test skips with it)."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return "bitsandbytes is not installed (pip install 'glmtune[qlora]')"
    try:
        check_backend("4bit")
    except UserError as exc:
        return str(exc)
    return ""


def test_a_quantized_base_still_trains_after_it_generated(tiny_model: Path) -> None:
    """Drafting self-replay answers runs the 4-bit base in eval mode without gradients, where bitsandbytes repacks
    its weights for a CPU inference kernel; training must still get gradients into the adapters afterwards."""
    if why := _bitsandbytes_runs_here():
        pytest.skip(why)
    import torch
    from peft import LoraConfig, get_peft_model

    from glmtune.models import load_model
    from glmtune.quantization import is_quantized, prepare_for_training

    model = load_model(str(tiny_model), quantization="4bit")
    assert is_quantized(model)
    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    with torch.no_grad():
        model(input_ids=ids)
    peft = get_peft_model(prepare_for_training(model), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    peft.train()
    peft(input_ids=ids, labels=ids).loss.backward()
    grads = [p.grad for n, p in peft.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None for g in grads)


@pytest.mark.slow
def test_qlora_train_predict_export_on_the_tiny_model(tiny_model: Path, tmp_path: Path) -> None:
    """4-bit base + LoRA on every linear layer trains, predicts on the unquantised base with the adapter, and
    exports a merged model whose logits equal base + adapter in full precision."""
    if why := _bitsandbytes_runs_here():
        pytest.skip(why)
    import torch
    from transformers import AutoModelForCausalLM

    from glmtune.export.merge import export_model
    from glmtune.infer.predict import predict_file
    from glmtune.models import load_model
    from glmtune.train.recipe import train

    rows = [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"answer number {i}"}]
            for i in range(16)]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    config = validate_config({
        "model": {"name_or_path": str(tiny_model), "quantization": "4bit"},
        "data": {"train_file": str(data), "max_length": 64, "val_size": 0, "self_replay": 0},
        "training": {"output_dir": str(tmp_path / "run"), "max_steps": 8, "learning_rate": 5e-3,
                     "logging_steps": 1, "early_stopping": False, "report_to": []}})
    train(config)
    run = tmp_path / "run"
    plan = {i["key"]: i for i in json.loads((run / "plan.json").read_text())["plan"]}
    assert plan["peft.lora.target_modules"]["value"] == "all-linear" and plan["training.fused_lora"]["value"] is False
    assert "(4bit)" in plan["memory.weights"]["reason"]
    adapter = json.loads((run / "adapter_config.json").read_text())
    assert {"q_proj", "gate_up_proj", "down_proj"} <= set(adapter["target_modules"])
    losses = [r["loss"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "loss" in r]
    assert len(losses) == 8 and losses[-1] < losses[0]

    predictions = predict_file(str(tiny_model), str(data), str(tmp_path / "pred.jsonl"), adapter=str(run),
                               max_new_tokens=4, batch_size=8)
    assert len(predictions) == 16 and all(p["num_tokens"] >= 1 for p in predictions)

    out = export_model(str(tiny_model), str(run), str(tmp_path / "merged"), dtype="fp32")
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    reference = load_model(str(tiny_model), adapter=str(run))  # fp32 base, adapter on top, not merged
    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, reference(input_ids=ids).logits, atol=1e-4)
        base = load_model(str(tiny_model))
        assert not torch.allclose(base(input_ids=ids).logits, merged(input_ids=ids).logits, atol=1e-4)


@pytest.mark.slow
def test_quantized_train_cli_reports_a_config_error_without_a_traceback(tiny_model: Path, tmp_path: Path) -> None:
    """The same refusal through ``glmtune train``: exit code, message naming the key, no traceback."""
    data = write_jsonl(tmp_path / "d.jsonl", [[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {{name_or_path: {tiny_model}, quantization: 4bit}}\ndata: {{train_file: {data}}}\n"
                   f"peft: {{method: freeze}}\ntraining: {{output_dir: {tmp_path / 'run'}}}\n")
    proc = subprocess.run([sys.executable, "-m", "glmtune", "train", str(cfg)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0 and "model.quantization: 4bit" in proc.stderr and "Traceback" not in proc.stderr
