"""Unlikelihood on the old identity's tokens: which tokens, the exact term, and the trainer wiring."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from glmtune.train.regularisers.unlikelihood import old_name_token_ids, unlikelihood_loss


def test_old_name_tokens_spare_pieces_other_words_use(tiny_tokenizer) -> None:
    """Whole-name tokens and the later characters of 智谱 are taken; 智 (as in 智能) and short pieces are not."""
    pieces = {tiny_tokenizer.decode([i]).strip() for i in old_name_token_ids(tiny_tokenizer)}
    assert {"ChatGLM", "Zhipu", "谱"} <= pieces
    assert "智" not in pieces
    assert all(len(p) >= 3 or p == "谱" for p in pieces)


def test_loss_is_minus_log_one_minus_p_over_trained_positions() -> None:
    """-log(1 - p(banned)) summed over positions whose next token is trained and not itself banned, divided by
    the trained positions (as the cross-entropy is)."""
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 10)
    banned = torch.tensor([7, 9])
    labels = torch.tensor([[-100, 1, 2, -100], [-100, -100, 7, 3]])  # (1, 2) targets 7 itself: skipped
    probs = logits.softmax(-1)
    expected = sum(-torch.log(1 - probs[b, t, [7, 9]].sum()) for b, t in ((0, 0), (0, 1), (1, 2)))
    assert torch.allclose(unlikelihood_loss(logits, labels, banned), expected / 4, atol=1e-6)  # 4 trained
    assert torch.allclose(unlikelihood_loss(logits, labels, banned, num_items=6), expected / 6, atol=1e-6)
    none = torch.full((1, 4), -100)
    assert unlikelihood_loss(logits[:1], none, banned).item() == 0.0


def test_gradient_lowers_the_banned_tokens_only_where_trained() -> None:
    """A step against the term lowers p(banned) at trained positions and leaves untrained positions alone."""
    torch.manual_seed(1)
    logits = torch.randn(1, 5, 12, requires_grad=True)
    labels = torch.tensor([[-100, -100, 4, 5, 6]])
    banned = torch.tensor([3])
    unlikelihood_loss(logits, labels, banned).backward()
    assert logits.grad is not None
    assert logits.grad[0, :1].abs().sum() == 0 and logits.grad[0, 4].abs().sum() == 0
    stepped = (logits - 10.0 * logits.grad).softmax(-1)[0, 1:4, 3]
    assert (stepped < logits.softmax(-1)[0, 1:4, 3]).all()


def test_trainer_adds_the_term_in_training_only(tiny_model: Path, tmp_path: Path) -> None:
    """GuardedTrainer's loss is the model's loss plus weight x term while training, the plain loss in eval."""
    from transformers import AutoModelForCausalLM, TrainingArguments

    from glmtune.train.trainer import GuardedTrainer

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    banned = [5, 6, 7]
    trainer = GuardedTrainer(model=model, args=args, suppress_ids=banned, suppress_weight=2.0)
    plain = GuardedTrainer(model=model, args=args)
    ids = torch.randint(10, 200, (2, 12))
    labels = ids.clone()
    labels[:, :4] = -100
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    model.train()
    base, outputs = plain.compute_loss(model, dict(inputs), return_outputs=True)
    total = trainer.compute_loss(model, dict(inputs))
    term = unlikelihood_loss(outputs.logits, labels, torch.tensor(banned))
    assert term.item() > 0
    assert torch.allclose(total, base + 2.0 * term, atol=1e-5)
    model.eval()
    assert torch.allclose(trainer.compute_loss(model, dict(inputs)), plain.compute_loss(model, dict(inputs)))


@pytest.mark.parametrize("name, author", [("Nova", "Acme Lab"), ("Zhipu Nova", None)])
def test_new_identity_tokens_are_never_suppressed(tiny_model: Path, tiny_tokenizer, tmp_path: Path,
                                                  name: str, author: str | None,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A new name that reuses an old piece keeps it; with the weight at 0 nothing is suppressed."""
    from glmtune.config.schema import GlmtuneConfig
    from glmtune.train.recipe import suppressed_ids

    config = GlmtuneConfig(model={"name_or_path": str(tiny_model)}, data={"train_file": str(tmp_path / "x.jsonl")},
                           identity={"name": name, "author": author, "unlikelihood": 1.0})
    caplog.set_level(logging.INFO, logger="glmtune")
    ids = suppressed_ids(tiny_tokenizer, config)
    own = set(tiny_tokenizer(name, add_special_tokens=False)["input_ids"])
    assert ids and not own & set(ids)
    said = [r.getMessage() for r in caplog.records if r.name == "glmtune.train.recipe"]
    assert said and f"on {len(ids)} old-identity tokens" in said[0]
    config.identity.unlikelihood = 0.0
    assert suppressed_ids(tiny_tokenizer, config) == []
