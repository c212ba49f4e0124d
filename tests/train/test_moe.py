"""GLM-4.5-style MoE: the plan counts total and active parameters, LoRA skips the router, and a short fine-tune
leaves the router and its correction bias bitwise as they were while the loss falls."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from glmtune.config.loader import validate_config
from glmtune.tiny.model import TINY_MOE
from glmtune.train.plan import DataStats, make_plan
from tests.conftest import write_jsonl
from tests.train.test_train_e2e import identity_data

EXPERT = 3 * 128 * TINY_MOE["moe_intermediate_size"]  # gate, up and down projections of one routed expert
MOE_LAYERS = 4 - TINY_MOE["first_k_dense_replace"]
UNCHOSEN = TINY_MOE["n_routed_experts"] - TINY_MOE["num_experts_per_tok"]
ROUTER = ("gate.weight", "gate.e_score_correction_bias")


@pytest.fixture(scope="module")
def moe_dir(tiny_family: Callable[[str], Path]) -> Path:
    """The tiny glm4-moe model."""
    return tiny_family("glm4-moe")


def config(model: Path | str, **sections: Any) -> Any:
    """A config for ``model`` with the given sections."""
    return validate_config({"model": {"name_or_path": str(model)}, "data": {"train_file": "t.jsonl"}, **sections})


def values(plan: Any) -> dict[str, Any]:
    return {item.key: item.value for item in plan.items}


def router_state(model: Any) -> dict[str, torch.Tensor]:
    """Every router weight and correction bias, by name, copied."""
    state = model.state_dict()
    return {k.replace("base_model.model.", "").replace(".base_layer", ""): v.detach().clone()
            for k, v in state.items() if k.endswith(ROUTER)}


def test_plan_counts_total_and_active_parameters(moe_dir: Path) -> None:
    from glmtune.train.plan_inputs import model_shape
    from glmtune.train.plan_view import plan_table

    shape = model_shape(str(moe_dir))
    assert shape.moe is not None and (shape.moe.experts, shape.moe.per_token) == (4, 2)
    assert shape.moe.layers == MOE_LAYERS and shape.moe.expert_params == EXPERT
    plan = make_plan(config(moe_dir), DataStats(30, 600, 1500), shape.params, False, shape=shape, bf16=True)
    v = values(plan)
    assert v["model.total_params"] == shape.params
    assert v["model.active_params"] == shape.params - MOE_LAYERS * UNCHOSEN * EXPERT == plan.active_params
    assert v["model.weight_memory"] == f"{shape.params * 2 / 2**20:.1f} MiB"  # bf16: 2 bytes a parameter
    targets = v["peft.lora.target_modules"]
    assert {"self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "shared_experts.down_proj"} <= set(targets)
    assert not any(t.endswith("gate") or "experts.gate_up" in t for t in targets)
    assert v["peft.lora.moe_experts"] is False and "memory" in next(
        i.reason for i in plan.items if i.key == "peft.lora.moe_experts")
    assert plan.as_dict()["model_active_params"] == plan.active_params
    assert f"({plan.active_params:,} active per token)" in str(plan_table(plan).title)
    experts = values(make_plan(config(moe_dir, peft={"lora": {"moe_experts": True}}), DataStats(30, 600, 1500),
                               shape.params, False, shape=shape))
    assert experts["peft.lora.moe_experts"] is True and experts["peft.lora.dropout"] == 0.0  # PEFT's ParamWrapper


def test_glm45_air_shape_from_its_config(tmp_path: Path) -> None:
    """GLM-4.5-Air's default config (meta device, nothing allocated): 128 experts, 8 per token."""
    from transformers import Glm4MoeConfig

    from glmtune.train.plan_inputs import model_shape

    Glm4MoeConfig().save_pretrained(tmp_path)
    shape = model_shape(str(tmp_path))
    assert shape.moe is not None and shape.moe.layers == 45 and shape.moe.expert_params == 3 * 4096 * 1408
    assert shape.params == 103_481_200_640 and shape.moe.active(shape.params) == 10_053_079_040
    dense = make_plan(config("m"), DataStats(30, 600, 1500), shape.params, False)
    assert "model.active_params" not in values(dense) and dense.active_params == 0  # no shape: planned as dense


def test_lora_skips_the_router_and_adds_experts_on_request(moe_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    from glmtune.errors import UserError
    from glmtune.models import quiet_peft
    from glmtune.train.arguments import apply_method

    def adapted(**lora: Any) -> Any:
        cfg = config(moe_dir, peft={"lora": {"r": 4, "alpha": 8, "dropout": 0.0, **lora}})
        with quiet_peft():
            return apply_method(AutoModelForCausalLM.from_pretrained(moe_dir), cfg)

    for targets in ("all-linear", ["q_proj", "gate_proj", "up_proj", "down_proj"]):
        model = adapted(target_modules=targets)
        wrapped = {n.rpartition(".lora_A")[0] for n, _ in model.named_modules() if n.endswith("lora_A.default")}
        assert any(n.endswith("layers.0.mlp.gate_proj") for n in wrapped), targets  # the dense layer's MLP
        assert any(n.endswith("layers.1.mlp.shared_experts.up_proj") for n in wrapped), targets
        assert not any(n.endswith(("mlp.gate", "mlp.experts")) for n in wrapped), targets
        assert not any(p.requires_grad for n, p in model.named_parameters() if n.endswith(ROUTER[0]))
    model = adapted(target_modules=["q_proj"], moe_experts=True)
    experts = [m for n, m in model.named_modules() if n.endswith("layers.1.mlp.experts")]
    assert type(experts[0]).__name__ == "ParamWrapper"
    loss = model(input_ids=torch.tensor([[5, 6, 7, 8]]), labels=torch.tensor([[5, 6, 7, 8]])).loss
    loss.backward()
    trained = {n for n, p in model.named_parameters() if p.grad is not None}
    assert any("experts" in n and "lora_B" in n for n in trained) and not any("mlp.gate." in n for n in trained)
    with pytest.raises(UserError, match="router"):
        adapted(target_modules=["q_proj", "gate"])
    with pytest.raises(UserError, match="dropout"):
        adapted(target_modules=["q_proj"], moe_experts=True, dropout=0.1)


@pytest.mark.slow
def test_short_lora_finetune_leaves_the_router_bitwise_unchanged(moe_dir: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForCausalLM

    from glmtune.models import load_model
    from glmtune.train import recipe

    seen: dict[str, Any] = {}
    original_finish = recipe.finish

    def finish(trainer: Any, *args: Any) -> Any:  # the trained model, before anything is saved or reloaded
        seen["model"] = trainer.model
        return original_finish(trainer, *args)

    monkeypatch.setattr(recipe, "finish", finish)
    data = write_jsonl(tmp_path / "train.jsonl", identity_data(24))
    cfg = validate_config({
        "model": {"name_or_path": str(moe_dir)},
        "data": {"train_file": str(data), "max_length": 128, "self_replay": 0, "repair": False},
        "training": {"output_dir": str(tmp_path / "run"), "max_steps": 16, "learning_rate": 5e-3,
                     "base_anchor": 0, "per_device_train_batch_size": 4, "logging_steps": 1, "report_to": []}})
    result = recipe.train(cfg)
    assert result.final_loss is not None and result.first_loss is not None
    assert result.final_loss < result.first_loss - 0.5
    assert values(result.plan)["model.active_params"] == result.plan.active_params > 0

    base = router_state(AutoModelForCausalLM.from_pretrained(moe_dir))
    trained = router_state(seen["model"])
    assert len(base) == 2 * MOE_LAYERS and trained.keys() == base.keys()
    for name, tensor in base.items():
        assert torch.equal(trained[name], tensor), name
    lora = [n for n, _ in seen["model"].named_modules() if "lora_A" in n]
    assert lora and not any(".mlp.gate." in n or n.endswith(".mlp.gate") for n in lora)

    # reloaded the way predict/serve/export load it: the shared experts' and dense MLP's adapters come back
    reloaded = load_model(str(moe_dir), adapter=str(tmp_path / "run"))
    for name in ("layers.0.mlp.down_proj", "layers.2.mlp.shared_experts.down_proj"):
        b = next(p for n, p in reloaded.named_parameters() if n.endswith(f"{name}.lora_B.default.weight"))
        assert b.abs().sum() > 0, name
    assert all(torch.equal(t, base[n]) for n, t in router_state(reloaded).items())
