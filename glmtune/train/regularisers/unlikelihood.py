"""Unlikelihood on the old identity's tokens: every trained reply position also learns not to say "ChatGLM".

Cross-entropy teaches "Acme Lab" where the data says it; held-out phrasings of "who made you" can still draw
the base model's strongest answer ("I was developed by Zhipu AI"). The unlikelihood term (Welleck et al., 2019)
adds ``-log(1 - p(old-name token))`` at every trained position, so the old names lose probability in every
context the fine-tune sees (its own replies and the self-replay conversations), not only where the data puts
the new name.
"""

from __future__ import annotations

from typing import Any

import torch

from glmtune.identity_names import OLD_NAMES
from glmtune.train.loss_average import per_trained_token

MIN_PIECE = 3  # shorter Latin pieces ("G", "LM", "Zh") also spell other words


def _cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def old_name_token_ids(tokenizer: Any, names: tuple[str, ...] = OLD_NAMES) -> list[int]:
    """Token ids that only the old names use: whole-name tokens, Latin pieces of 3+ characters, later CJK pieces.

    The first character of a CJK name ("智" of 智谱) also starts common words (智能), so only the pieces after
    it are taken; Latin pieces shorter than three characters are never taken.
    """
    ids: set[int] = set()
    for name in names:
        for text in (name, " " + name):
            pieces = tokenizer(text, add_special_tokens=False)["input_ids"]
            for token in pieces:
                piece = tokenizer.decode([token]).strip()
                if not piece or piece not in name:
                    continue
                if len(pieces) == 1 or (len(piece) >= MIN_PIECE and not _cjk(piece)) or (_cjk(piece) and name.find(piece) > 0):
                    ids.add(int(token))
    return sorted(ids)


def penalty(rows: torch.Tensor, banned: torch.Tensor) -> torch.Tensor:
    """``-log(1 - p(banned))`` for each row of logits (N, vocab): the unlikelihood of the banned tokens."""
    log_p = torch.logsumexp(rows[:, banned], dim=-1) - torch.logsumexp(rows, dim=-1)
    return -torch.log1p(-log_p.exp().clamp(max=1 - 1e-6))


def unlikelihood_loss(logits: torch.Tensor, labels: torch.Tensor, banned: torch.Tensor,
                      num_items: torch.Tensor | int | None = None) -> torch.Tensor:
    """Sum of ``-log(1 - p(banned))`` over trained positions (labels != -100, next-token shift), normalised like
    the cross-entropy: divided by ``num_items`` when given, else by the number of trained positions. Positions
    whose target is itself a banned token add nothing, so that the term never argues with the data."""
    targets = labels[:, 1:]
    trained = targets != -100
    keep = trained & ~torch.isin(targets, banned)
    chosen = logits[:, :-1][keep].float()
    if chosen.numel() == 0:
        return logits.sum() * 0.0
    return per_trained_token(penalty(chosen, banned).sum(), trained.sum(), num_items)
