"""The planner's memory estimate: every term against numbers worked out by hand, for a small model and a
GLM-4-9B-shaped one (counted from its config alone, on the meta device), and its rows in ``glmtune plan``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from glmtune.train.memory import (
    MemorySetup,
    changes_to_fit,
    estimate_for_config,
    estimate_memory,
    fit_text,
    lora_params,
    trainable_params,
)
from glmtune.train.plan_inputs import ModelShape

SMALL = ModelShape(1_057_152, 128, 384, 4, 3000, linears=(
    ("self_attn.q_proj", 128, 128, 4), ("self_attn.k_proj", 128, 64, 4), ("self_attn.v_proj", 128, 64, 4),
    ("self_attn.o_proj", 128, 128, 4), ("mlp.gate_up_proj", 128, 768, 4), ("mlp.down_proj", 384, 128, 4)))
GiB = 2**30


def test_small_model_terms_match_hand_arithmetic() -> None:
    """LoRA r8 on q/k/v, bf16, 2 x 256 tokens, selective checkpointing, chunked loss."""
    # LoRA: 4 layers x 8 x ((128+128) + (128+64) + (128+64)) = 4 x 8 x 640
    assert lora_params(SMALL.linears, ["q_proj", "k_proj", "v_proj"], 8) == 20_480
    setup = MemorySetup(SMALL, "lora", 20_480, bf16=True, micro_batch=2, length=256, checkpointing="selective",
                        chunk_rows=1024)
    est = estimate_memory(setup)
    assert est.term("weights") == 1_057_152 * 2 == 2_114_304
    assert est.term("adapter") == est.term("gradients") == 20_480 * 4 == 81_920
    assert est.term("optimizer") == 20_480 * 8 == 163_840
    # per token: 4 layers x (7·128 + 2·384 = 1,664 kept) + one layer recomputed (16·128 + 5·384 - 1,664 = 2,304)
    assert est.term("activations") == 512 * (4 * 1_664 + 2_304) * 2 == 9_175_040
    # 512 rows (fewer than one chunk of 1,024) x 3,000 vocabulary x 3 fp32 tensors
    assert est.term("loss_head") == 512 * 3000 * 12 == 18_432_000
    assert est.total == 2_114_304 + 81_920 + 81_920 + 163_840 + 9_175_040 + 18_432_000 == 30_049_024


def test_small_model_checkpointing_modes_and_full_fine_tuning() -> None:
    """none keeps every layer's 3,968 values a token; full keeps 128 a layer plus one layer; full FT is fp32."""
    base = MemorySetup(SMALL, "lora", 20_480, bf16=False, micro_batch=1, length=100, checkpointing=False)
    assert estimate_memory(base).term("activations") == 100 * 4 * 3_968 * 4 == 6_348_800
    full = MemorySetup(SMALL, "lora", 20_480, bf16=False, micro_batch=1, length=100, checkpointing=True)
    assert estimate_memory(full).term("activations") == 100 * (4 * 128 + 3_968) * 4 == 1_792_000
    # the full logits: 100 rows x 3,000 x 12 bytes; with the base anchor 5 fp32 tensors
    assert estimate_memory(base).term("loss_head") == 3_600_000
    assert estimate_memory(MemorySetup(SMALL, length=100, anchor=True)).term("loss_head") == 100 * 3000 * 20
    ft = estimate_memory(MemorySetup(SMALL, "full", SMALL.params, bf16=True, length=100))
    assert ft.term("weights") == ft.term("gradients") == 1_057_152 * 4  # trained weights load in fp32
    assert ft.term("optimizer") == 1_057_152 * 8 and ft.term("adapter") == 0


def test_small_model_quantized_weights() -> None:
    """4-bit: the linear weights at 0.5 + 1/64 + 4/16384 bytes, the rest in fp32, one linear dequantised in bf16."""
    linear = 4 * (128 * 128 * 2 + 128 * 64 * 2 + 128 * 768 + 384 * 128)
    assert linear == 786_432
    est = estimate_memory(MemorySetup(SMALL, "lora", 20_480, quantization="4bit"))
    assert est.term("weights") == round(786_432 * 0.515869140625) + (1_057_152 - 786_432) * 4 + 128 * 768 * 2
    assert est.term("weights") == 405_696 + 1_082_880 + 196_608
    int8 = estimate_memory(MemorySetup(SMALL, "lora", 20_480, quantization="8bit"))
    assert int8.term("weights") == 786_432 + 1_082_880 + 196_608


@pytest.fixture(scope="module")
def glm9b_config():
    """GLM-4-9B-0414's shape (Glm4ForCausalLM): 4096 wide, 40 layers, 32 heads of 128 with 2 KV heads."""
    from transformers import Glm4Config

    return Glm4Config(vocab_size=151552, hidden_size=4096, intermediate_size=13696, num_hidden_layers=40,
                      num_attention_heads=32, num_key_value_heads=2, head_dim=128, attention_bias=True,
                      tie_word_embeddings=False)


@pytest.fixture(scope="module")
def glm9b(glm9b_config) -> ModelShape:
    from glmtune.train.plan_inputs import shape_from_config

    return shape_from_config(glm9b_config)


def test_glm9b_counted_from_its_config_alone(glm9b: ModelShape) -> None:
    """Embeddings and head 151,552 x 4,096 each; a layer 203,952,640 linear parameters (q/k/v biases included)
    and four norms of 4,096."""
    assert glm9b.params == 2 * 151_552 * 4_096 + 40 * (203_952_640 + 4 * 4_096) + 4_096 == 9_400_279_040
    assert ("self_attn.k_proj", 4096, 256, 40) in glm9b.linears and ("mlp.gate_up_proj", 4096, 27392, 40) in glm9b.linears
    # LoRA r8 on q/k/v: 40 x 8 x (8,192 + 4,352 + 4,352)
    assert trainable_params(glm9b, "lora", 8, ["q_proj", "k_proj", "v_proj"]) == 5_406_720


def test_glm9b_lora_bf16_by_hand(glm9b: ModelShape) -> None:
    """One 1,024-token micro-batch, selective checkpointing, chunked loss: 23.8 GiB, fits 40 GB but not 24 GB."""
    setup = MemorySetup(glm9b, "lora", 5_406_720, bf16=True, micro_batch=1, length=1024, checkpointing="selective",
                        chunk_rows=1024)
    est = estimate_memory(setup)
    assert est.term("weights") == 9_400_279_040 * 2 == 18_800_558_080
    assert est.term("adapter") + est.term("gradients") + est.term("optimizer") == 5_406_720 * 16 == 86_507_520
    # kept 7·4096 + 2·13696 = 56,064 a layer; a layer 16·4096 + 5·13696 = 134,016
    assert est.term("activations") == 1024 * (40 * 56_064 + 134_016 - 56_064) * 2 == 4_752_408_576
    assert est.term("loss_head") == 1024 * 151_552 * 12 == 1_862_270_976
    assert est.total == 25_501_745_152  # 23.75 GiB
    assert not est.fits(24) and est.fits(40) and est.fits(80)
    changes = changes_to_fit(setup, 24)
    # QLoRA: 15.0 GiB; full checkpointing: 19.9 GiB; 512 tokens: 20.7 GiB (24 GB x 90% = 21.6 GiB)
    assert changes == ["QLoRA (model.quantization=4bit)", "training.gradient_checkpointing=true",
                       "data.max_length=512"]
    fits, advice = fit_text(setup, est)
    assert fits == "40 GB, 80 GB" and advice.startswith("for 24 GB: QLoRA (model.quantization=4bit) or ")


def test_glm9b_qlora_and_what_the_chunked_loss_saves(glm9b: ModelShape) -> None:
    """NF4 weights: 8,157,921,280 linear weights at 0.5159 bytes, 1,242,357,760 others in fp32, gate_up in bf16."""
    qlora = estimate_memory(MemorySetup(glm9b, "lora", 5_406_720, quantization="4bit", length=1024))
    assert qlora.term("weights") == 4_208_419_840 + 4_969_431_040 + 224_395_264 == 9_402_246_144
    assert qlora.total == 9_402_246_144 + 86_507_520 + 4_752_408_576 + 1_862_270_976  # 15.0 GiB
    assert qlora.fits(24)
    # 2 x 2,048 tokens: the full logits are 4,096 rows x 151,552 x 12 bytes; the chunked loss keeps 1,024 rows
    full = estimate_memory(MemorySetup(glm9b, micro_batch=2, length=2048, chunk_rows=0)).term("loss_head")
    chunked = estimate_memory(MemorySetup(glm9b, micro_batch=2, length=2048, chunk_rows=1024)).term("loss_head")
    assert (full, chunked) == (7_449_083_904, 1_862_270_976)
    assert full - chunked == 5_586_812_928  # 5.2 GiB saved


def test_glm9b_full_fine_tuning_fits_no_card(glm9b: ModelShape) -> None:
    """fp32 weights, gradients and AdamW moments: 16 bytes a parameter, 140 GiB before activations."""
    est = estimate_memory(MemorySetup(glm9b, "full", glm9b.params, length=1024))
    assert est.term("weights") + est.term("gradients") + est.term("optimizer") == 9_400_279_040 * 16
    assert not est.fits(80)
    fits, advice = fit_text(MemorySetup(glm9b, "full", glm9b.params, length=1024), est)
    assert fits == "none of 24/40/80 GB" and "for 80 GB: peft.method=lora" in advice


def test_estimate_for_config_needs_no_weights(glm9b_config, tmp_path: Path) -> None:
    """The documented entry point, and ``python -m glmtune.train.memory`` on a folder holding only config.json."""
    from glmtune.train.memory import main

    est = estimate_for_config(glm9b_config, max_length=1024)
    assert est.total == 25_501_745_152
    glm9b_config.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    assert main([str(tmp_path), "--quantization", "4bit"]) == 0


def test_plan_rows_and_json(glm9b: ModelShape) -> None:
    """make_plan adds a row per term, the peak and the cards it fits; plan.json carries the bytes."""
    from glmtune.config.loader import validate_config
    from glmtune.train.plan import DataStats, make_plan

    cfg = validate_config({"model": {"name_or_path": "m"}, "data": {"train_file": "t.jsonl", "max_length": 1024},
                           "training": {"gradient_checkpointing": "selective"}})
    plan = make_plan(cfg, DataStats(3000, 600_000, 1_500_000, 1024, [500] * 3000), glm9b.params, False,
                     shape=glm9b, bf16=True)
    rows = {i.key: i for i in plan.items if i.key.startswith("memory.")}
    assert list(rows) == ["memory.weights", "memory.adapter", "memory.gradients", "memory.optimizer",
                          "memory.activations", "memory.loss_head", "memory.peak", "memory.fits"]
    assert all(i.source == "estimate" for i in rows.values())
    assert rows["memory.weights"].value == "17.5 GiB" and "× 2 bytes (bf16)" in rows["memory.weights"].reason
    # r 32 (600,000 supervised tokens) on q/k/v: 4 x 5,406,720
    assert "21,626,880 lora parameters" in rows["memory.adapter"].reason
    assert rows["memory.fits"].value == "40 GB, 80 GB" and "for 24 GB: QLoRA" in rows["memory.fits"].reason
    data = json.loads(json.dumps(plan.as_dict(), default=str))["memory_estimate"]
    assert data["weights"] == 18_800_558_080 and data["fits_gb"] == [40, 80]
    qlora = make_plan(cfg.model_copy(update={"model": cfg.model.model_copy(update={"quantization": "4bit"})}),
                      DataStats(3000, 600_000, 1_500_000, 1024, [500] * 3000), glm9b.params, False, shape=glm9b,
                      bf16=True)
    got = {i.key: i for i in qlora.items}
    assert got["peft.lora.target_modules"].value == "all-linear" and "QLoRA" in got["peft.lora.target_modules"].reason
    assert "(4bit)" in got["memory.weights"].reason and "24 GB" in got["memory.fits"].value


def test_cli_plan_prints_the_estimate(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``glmtune plan`` shows the memory rows; ``--json`` has the bytes."""
    from glmtune.cli.main import main
    from tests.conftest import write_jsonl

    data = write_jsonl(tmp_path / "d.jsonl", [[{"role": "user", "content": f"q{i}"},
                                               {"role": "assistant", "content": f"a{i}"}] for i in range(12)])
    config = tmp_path / "train.yaml"
    config.write_text(f"model: {{name_or_path: {tiny_model}}}\ndata: {{train_file: {data}}}\n"
                      f"training: {{output_dir: {tmp_path / 'run'}}}\n", encoding="utf-8")
    assert main(["plan", str(config)]) == 0
    out = capsys.readouterr().out
    for key in ("memory.weights", "memory.activations", "memory.loss_head", "memory.peak", "memory.fits"):
        assert key in out, key
    assert "24 GB, 40 GB, 80 GB" in out
    assert main(["plan", str(config), "--json"]) == 0
    estimate = json.loads(capsys.readouterr().out)["memory_estimate"]
    assert estimate["total"] == sum(v for k, v in estimate.items() if k not in ("total", "fits_gb"))


@pytest.mark.parametrize("targets", ["all-linear", ["q_proj", "k_proj", "v_proj"], ["gate_up_proj"]])
def test_lora_count_equals_what_peft_builds(tiny_model: Path, targets) -> None:
    """The estimate's LoRA parameters equal those PEFT adds to the tiny model, for each kind of target."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    from glmtune.train.plan_inputs import shape_from_config

    config = AutoConfig.from_pretrained(tiny_model)
    with torch.device("meta"):
        model = get_peft_model(AutoModelForCausalLM.from_config(config), LoraConfig(r=8, target_modules=targets))
    built = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    assert trainable_params(shape_from_config(config), "lora", 8, targets) == built > 0
