"""``glmtune predict``: answer every conversation in a file and write predictions beside references."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from glmtune.data.read import read_any
from glmtune.errors import DataError, UserError
from glmtune.infer.generate import generate_replies
from glmtune.layout import get_layout
from glmtune.models import load_model, load_tokenizer_for

log = logging.getLogger(__name__)


def predict_file(
    model_path: str,
    data: str,
    out: str,
    adapter: str | None = None,
    max_new_tokens: int = 256,
    batch_size: int = 16,
    repetition_penalty: float | None = None,
) -> list[dict[str, Any]]:
    """Generate a reply for each conversation's last assistant turn (or for its end) and write JSONL."""
    if max_new_tokens < 1 or batch_size < 1:
        raise UserError(f"max_new_tokens and batch_size must be at least 1, got {max_new_tokens} and {batch_size}")
    read = read_any(data, need_reply=False)
    for problem in read.problems:
        log.info(f"  skipped {problem}")
    if not read.conversations:
        raise DataError(f"{data}: no usable conversation")
    tokenizer = load_tokenizer_for(model_path, adapter)
    layout = get_layout(tokenizer)
    import torch

    cuda = torch.cuda.is_available()  # as glmtune eval: bf16 on a GPU that has it
    model = load_model(model_path, adapter=adapter,
                       dtype=torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32)
    if cuda:
        model.to("cuda")
    prompts, references = [], []
    for conv in read.conversations:
        prompt, reference = conv.prompt_and_reference()
        prompts.append(prompt)
        references.append(reference)
    gens = generate_replies(model, tokenizer, layout, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                            repetition_penalty=repetition_penalty)
    rows = []
    for conv, prompt, ref, gen in zip(read.conversations, prompts, references, gens):
        rows.append({
            "source": conv.source, "messages": prompt, "prediction": gen.text, "reference": ref,
            "finish_reason": gen.finish_reason, "stop_token": gen.stop_token, "num_tokens": gen.num_tokens,
            "loop": gen.loop,
            **({"reasoning": gen.reasoning} if layout.thinks else {}),  # the answer alone is the prediction
        })
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    stopped = sum(r["finish_reason"] == "stop" for r in rows)
    loops = sum(r["loop"] for r in rows)
    log.info(f"wrote {len(rows)} predictions to {out_path} ({stopped} stopped, {len(rows) - stopped - loops} hit max "
             f"tokens, {loops} cut as loops by the repetition guard)")
    return rows
