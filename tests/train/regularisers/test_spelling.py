"""Spelling weight: which positions, the exact term, and the trainer wiring on both loss paths."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from glmtune.train.regularisers.spelling import later_name_positions, name_token_sequences, spelling_loss


def test_sequences_are_the_multi_token_spellings_only(tiny_tokenizer) -> None:
    """An invented name gives its bare and spaced spellings; a one-token word gives none."""
    sequences = name_token_sequences(tiny_tokenizer, ("Draskou",))
    assert sequences and all(len(s) >= 2 for s in sequences)
    assert list(sequences[0]) in (tiny_tokenizer("Draskou", add_special_tokens=False)["input_ids"],
                                  tiny_tokenizer(" Draskou", add_special_tokens=False)["input_ids"])
    single = [t for t in ("I", "a") if len(tiny_tokenizer(t, add_special_tokens=False)["input_ids"]) == 1]
    assert single and name_token_sequences(tiny_tokenizer, tuple(single)) == []


def test_positions_mark_every_token_after_the_first_of_each_occurrence() -> None:
    """Two occurrences in one row, none across the ignore index, and a partial spelling is not marked."""
    targets = torch.tensor([[9, 1, 2, 3, 9, 1, 2, 3, -100],
                            [1, 2, 9, 1, 2, -100, 3, 1, 2]])
    mask = later_name_positions(targets, [(1, 2, 3)])
    assert mask[0].tolist() == [False, False, True, True, False, False, True, True, False]
    assert not mask[1].any()
    assert not later_name_positions(targets[:, :2], [(1, 2, 3)]).any()  # shorter than the name


def test_loss_is_the_cross_entropy_of_the_chosen_rows_normalised_like_the_lm_loss() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 11)
    targets = torch.tensor([4, 5, 6])
    expected = F.cross_entropy(logits, targets, reduction="sum")
    assert torch.allclose(spelling_loss(logits, targets, torch.tensor(10)), expected / 10)
    assert torch.allclose(spelling_loss(logits, targets, torch.tensor(10), num_items=6), expected / 6)
    assert spelling_loss(logits[:0], targets[:0], torch.tensor(10)).item() == 0.0


@pytest.mark.parametrize("chunked", [False, True])
def test_trainer_adds_the_weighted_term_in_training_only(tiny_model: Path, tmp_path: Path, chunked: bool) -> None:
    """loss = plain loss + weight x CE(later name tokens) / trained tokens, on the full-logits and chunked paths;
    evaluation loss is the plain loss."""
    from transformers import AutoModelForCausalLM, TrainingArguments

    from glmtune.train.trainer import GuardedTrainer

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    name = (41, 42, 43)
    trainer = GuardedTrainer(model=model, args=args, spelling=[name], spelling_weight=2.0, chunked_loss=chunked)
    plain = GuardedTrainer(model=model, args=args)
    ids = torch.randint(50, 200, (2, 12))
    ids[0, 5:8] = torch.tensor(name)
    labels = ids.clone()
    labels[:, :3] = -100
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    model.train()
    base, outputs = plain.compute_loss(model, dict(inputs), return_outputs=True)
    total = trainer.compute_loss(model, dict(inputs))
    trained = (labels[:, 1:] != -100).sum()
    # targets 42 and 43 sit at label positions 6 and 7, predicted from positions 5 and 6
    rows = outputs.logits[0, [5, 6]]
    term = F.cross_entropy(rows, torch.tensor([42, 43]), reduction="sum") / trained
    assert term.item() > 0
    assert torch.allclose(total, base + 2.0 * term, atol=1e-5)
    model.eval()
    assert torch.allclose(trainer.compute_loss(model, dict(inputs)), plain.compute_loss(model, dict(inputs)),
                          atol=1e-6)


def test_recipe_spells_name_and_author_and_the_planner_turns_it_on(tiny_model: Path, tiny_tokenizer,
                                                                   tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """The recipe hands the trainer the name's and author's spellings, none at weight 0; auto is on with a name."""
    from glmtune.config.schema import GlmtuneConfig
    from glmtune.train.plan_rules import SPELLING_WEIGHT, rule_spelling_weight
    from glmtune.train.recipe import spelled_names

    config = GlmtuneConfig(model={"name_or_path": str(tiny_model)}, data={"train_file": str(tmp_path / "x.jsonl")},
                           identity={"name": "Draskou", "author": "Radria Studio", "spelling_weight": 2.0})
    caplog.set_level(logging.INFO, logger="glmtune")
    sequences = spelled_names(tiny_tokenizer, config)
    assert set(name_token_sequences(tiny_tokenizer, ("Draskou",))) < set(sequences)
    assert any("spelling: weight 2" in r.getMessage() for r in caplog.records)
    config.identity.spelling_weight = 0.0
    assert spelled_names(tiny_tokenizer, config) == []
    assert rule_spelling_weight("Draskou")[0] == SPELLING_WEIGHT > 0
    assert rule_spelling_weight(None)[0] == 0.0
