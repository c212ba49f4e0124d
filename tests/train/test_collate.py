"""Right-padded batches without a padding mask train exactly like masked left-padded ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from glmtune.train.collate import RightPadCollator, collator


def features(lengths: tuple[int, ...] = (9, 17, 4), seed: int = 0) -> list[dict[str, list[int]]]:
    """Samples of the given lengths whose first three tokens are prompt (label -100)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(10, 2000, (n,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [-100] * 3 + ids[3:]})
    return out


def test_rows_are_padded_on_the_right_with_untrained_pads() -> None:
    batch = RightPadCollator(pad_id=0)(features())
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (3, 17)
    assert batch["attention_mask"].sum(dim=1).tolist() == [9, 17, 4]
    assert batch["input_ids"][2, 4:].eq(0).all() and batch["labels"][2, 4:].eq(-100).all()
    assert batch["input_ids"][0, :9].tolist() == features()[0]["input_ids"]


def test_collator_picks_packing_or_right_padding(tiny_tokenizer) -> None:
    assert isinstance(collator(tiny_tokenizer, packing=False), RightPadCollator)
    assert "position_ids" in collator(tiny_tokenizer, packing=True)(features())


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_unmasked_right_padding_equals_masked_left_padding(tiny_model: Path, tiny_tokenizer, attn: str) -> None:
    """Same loss and LoRA gradients (1e-5, fp32) as transformers' own left-padding collator with its mask."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32, attn_implementation=attn)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                            init_lora_weights=False)).train()
    assert tiny_tokenizer.padding_side == "left"
    left = DataCollatorForSeq2Seq(tiny_tokenizer, padding=True, label_pad_token_id=-100)(features())
    right = RightPadCollator(tiny_tokenizer.pad_token_id)(features())
    assert left["attention_mask"][2, 0] == 0 and right["attention_mask"][2, -1] == 0

    def run(batch: dict[str, torch.Tensor]) -> tuple[float, dict[str, torch.Tensor]]:
        loss = model(**batch).loss
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        model.zero_grad(set_to_none=True)
        return loss.item(), grads

    expected = run(dict(left))
    got = run({k: v for k, v in right.items() if k != "attention_mask"})
    assert got[0] == pytest.approx(expected[0], abs=1e-5)
    for name, grad in expected[1].items():
        assert torch.allclose(got[1][name], grad, atol=1e-5 * grad.abs().max().item(), rtol=1e-4), name


def test_mask_is_left_out_only_where_it_hides_nothing() -> None:
    """SDPA and eager drop it for padded batches; flash-attention keeps it (to skip pads); packed rows have none."""
    from types import SimpleNamespace

    from glmtune.train.collate import mask_free

    def model(attn: str) -> SimpleNamespace:
        return SimpleNamespace(config=SimpleNamespace(_attn_implementation=attn))

    assert mask_free(model("sdpa"), packing=False) and mask_free(model("eager"), packing=False)
    assert not mask_free(model("flash_attention_2"), packing=False)
    assert not mask_free(model("sdpa"), packing=True)


def test_trainer_leaves_the_mask_out_of_the_forward(tiny_model: Path, tmp_path: Path) -> None:
    """With causal_padding the model is called without attention_mask; the batch keeps it for token counting."""
    from transformers import AutoModelForCausalLM, TrainingArguments

    from glmtune.train.trainer import GuardedTrainer

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    seen: list[set[str]] = []
    model.register_forward_pre_hook(lambda _m, _a, kwargs: seen.append(set(kwargs)), with_kwargs=True)
    batch = RightPadCollator(0)(features())
    for causal in (True, False):
        trainer = GuardedTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to=[]),
                                 causal_padding=causal)
        trainer.compute_loss(model, dict(batch))
        assert ("attention_mask" in seen[-1]) is not causal
    assert "attention_mask" in batch
