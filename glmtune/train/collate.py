"""Batch collation for training: right-padded rows whose padding mask stays out of the forward, or packed rows.

A causal model's token attends only to the tokens before it. When every row is padded on the right, a real
token never sees a pad, so the padding mask changes nothing for the positions that are trained (pads carry
label -100) and the trainer leaves it out of the forward pass: attention then runs as plain causal attention
(SDPA's ``is_causal`` path, which skips the blocks above the diagonal; on a GPU, the flash kernel that an
explicit mask rules out) instead of under an explicit mask. Loss and gradients are those of the masked,
left-padded batch to fp32 rounding (tests/train/test_collate.py). With flash-attention the mask is kept: it uses it
to skip the pads.
"""

from __future__ import annotations

from typing import Any

import torch


class RightPadCollator:
    """Pad ``input_ids`` (with the pad id) and ``labels`` (with -100) on the right. The attention mask is
    returned for the Trainer's count of non-padding tokens; ``GuardedTrainer(causal_padding=True)`` leaves it
    out of the forward pass."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """One batch from tokenized samples (``input_ids``, ``labels``)."""
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(features), width), -100, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            ids[row, :n] = torch.as_tensor(f["input_ids"], dtype=torch.long)
            labels[row, :n] = torch.as_tensor(f["labels"], dtype=torch.long)
            mask[row, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def collator(tokenizer: Any, packing: bool) -> Any:
    """The flattening collator that packs a micro-batch into one padding-free row, or ``RightPadCollator``."""
    from transformers import DataCollatorWithFlattening

    if packing:
        return DataCollatorWithFlattening(return_position_ids=True, separator_id=-100)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return RightPadCollator(int(pad_id))


def mask_free(model: Any, packing: bool) -> bool:
    """Whether right-padded batches go through the model without their padding mask (glmtune.train.collate):
    with SDPA or eager attention; flash-attention uses the mask to skip the pads, and packed rows have none."""
    return not packing and "flash" not in str(getattr(model.config, "_attn_implementation", ""))
