"""The chunked loss equals transformers' own loss and gradients, in the trainer too, packed or padded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from glmtune.train.chunked_loss import chunked_lm_loss, output_head, supports_chunked_loss
from glmtune.train.regularisers.unlikelihood import unlikelihood_loss


def lora_model(tiny_model: Path, method: str = "lora"):
    """The tiny GLM-4 with LoRA on every linear layer (or prefix tuning), in fp32 and training mode."""
    from peft import LoraConfig, PrefixTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    config = (LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
              if method == "lora" else PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    return get_peft_model(base, config).train()


def batch(seed: int = 0, rows: int = 3, length: int = 19) -> dict[str, torch.Tensor]:
    """Random ids whose first tokens and padding are not trained (-100), like a chat batch."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, 2000, (rows, length), generator=g)
    labels = ids.clone()
    labels[:, :6] = -100
    mask = torch.ones_like(ids)
    if rows > 1:  # a padded row
        labels[1, 12:] = -100
        mask[1, 12:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def grads(model) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


@pytest.mark.parametrize("num_items", [None, 40])
def test_loss_and_gradients_equal_the_full_logits_path(tiny_model: Path, num_items: int | None) -> None:
    """Over several chunks, with and without transformers' accumulated-batch normalisation, to 1e-5."""
    model = lora_model(tiny_model)
    inputs = batch()
    kwargs = {"num_items_in_batch": torch.tensor(num_items)} if num_items else {}
    reference = model(**inputs, **kwargs).loss
    reference.backward()
    expected = grads(model)
    out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], output_hidden_states=True,
                 logits_to_keep=1)
    assert out.logits.shape[1] == 1  # no full logits tensor
    loss, ul, _ = chunked_lm_loss(out.hidden_states[-1], inputs["labels"], output_head(model),
                               torch.tensor(num_items) if num_items else None, chunk=7)
    loss.backward()
    got = grads(model)
    assert ul.item() == 0.0
    assert torch.allclose(loss, reference, atol=1e-5, rtol=1e-5)
    assert expected.keys() == got.keys() and len(got) > 0
    for name in expected:
        assert torch.allclose(got[name], expected[name], atol=1e-5, rtol=1e-4), name


def test_unlikelihood_from_chunks_equals_the_full_logits_term(tiny_model: Path) -> None:
    """The unlikelihood sum taken chunk by chunk equals the term computed on the full logits."""
    model = lora_model(tiny_model)
    inputs = batch(1)
    inputs["labels"][0, 8] = 351  # a trained position whose target is itself banned: adds nothing, still counted
    banned = torch.tensor([285, 351, 7])
    with torch.no_grad():
        logits = model(**{k: v for k, v in inputs.items() if k != "labels"}).logits
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                    output_hidden_states=True, logits_to_keep=1)
        _, ul, _ = chunked_lm_loss(out.hidden_states[-1], inputs["labels"], output_head(model), banned=banned, chunk=5)
    assert torch.allclose(ul, unlikelihood_loss(logits, inputs["labels"], banned), atol=1e-6)


@pytest.mark.parametrize("suppress, smoothing", [(False, 0.0), (True, 0.0), (False, 0.1)])
def test_trainer_loss_is_the_same_chunked_or_not(tiny_model: Path, tmp_path: Path, suppress: bool,
                                                 smoothing: float) -> None:
    """GuardedTrainer with chunked_loss gives the loss and gradients of the usual path (transformers' label
    smoother included), packed rows included."""
    from transformers import TrainingArguments

    from glmtune.train.trainer import GuardedTrainer

    model = lora_model(tiny_model)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], label_smoothing_factor=smoothing)
    extra = {"suppress_ids": [285, 351], "suppress_weight": 1.5} if suppress else {}
    plain = GuardedTrainer(model=model, args=args, **extra)
    chunked = GuardedTrainer(model=model, args=args, chunked_loss=True, **extra)
    inputs = batch(2, rows=1, length=24)
    inputs["position_ids"] = torch.cat([torch.arange(10), torch.arange(14)])[None]  # two packed samples
    inputs["labels"][0, 10] = -100
    items = torch.tensor(int((inputs["labels"][:, 1:] != -100).sum()))
    expected = plain.compute_loss(model, dict(inputs), num_items_in_batch=items)
    expected.backward()
    want = grads(model)
    got_loss = chunked.compute_loss(model, dict(inputs), num_items_in_batch=items)
    got_loss.backward()
    got = grads(model)
    assert torch.allclose(got_loss, expected, atol=1e-5, rtol=1e-5)
    for name in want:
        assert torch.allclose(got[name], want[name], atol=1e-5, rtol=1e-4), name
    model.eval()
    with torch.no_grad():
        assert torch.allclose(chunked.compute_loss(model, dict(inputs)), plain.compute_loss(model, dict(inputs)),
                              atol=1e-5)


def test_prefix_tuning_and_models_without_a_linear_head() -> None:
    """A model whose output layer is not a plain Linear (or that caps its logits) is refused with a reason."""
    class Capped(torch.nn.Module):
        config = type("C", (), {"final_logit_softcapping": 30.0})()

        def get_output_embeddings(self) -> torch.nn.Module:
            return torch.nn.Linear(4, 8)

    class NoHead(torch.nn.Module):
        def get_output_embeddings(self) -> None:
            return None

    assert supports_chunked_loss(NoHead()) == (False, "the model has no linear output layer (lm_head)")
    ok, why = supports_chunked_loss(Capped())
    assert not ok and "final_logit_softcapping" in why


def test_prefix_tuning_gives_the_same_loss(tiny_model: Path) -> None:
    """P-tuning v2 (PEFT prefix tuning) passes the hidden states through too."""
    model = lora_model(tiny_model, "ptuning")
    inputs = batch(3)
    reference = model(**inputs).loss
    out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], output_hidden_states=True,
                logits_to_keep=1)
    loss = chunked_lm_loss(out.hidden_states[-1], inputs["labels"], output_head(model)).ce
    assert torch.allclose(loss, reference, atol=1e-5)


def test_loss_head_benchmark_runs_and_finds_the_two_losses_equal(tmp_path: Path) -> None:
    """`python -m bench.loss_head` at a small size: both settings run in their own processes and agree."""
    import json

    from bench.loss_head import main

    assert main(["--tokens", "96", "--vocab", "3000", "--hidden", "32", "--steps", "1", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["equal"] is True and [r["mode"] for r in report["rows"]] == ["full", "chunked"]
    assert all(r["peak_rss_mb"] >= r["start_rss_mb"] > 0 for r in report["rows"])
