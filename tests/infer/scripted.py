"""A real model made to write scripted replies, for tests of what is done with a reply."""

from __future__ import annotations

from typing import Any


class Forced:
    """A model whose replies are scripted: each ``generate`` call writes the next script, token by token,
    through the real model's ``generate`` (its stop ids, padding and cache), and records the prompt."""

    def __init__(self, model: Any, tokenizer: Any, scripts: list[str]) -> None:
        self.model, self.tokenizer, self.scripts, self.prompts = model, tokenizer, list(scripts), []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def generate(self, input_ids: Any, logits_processor: Any = None, **kwargs: Any) -> Any:
        import torch
        from transformers import LogitsProcessorList

        script = self.tokenizer(self.scripts.pop(0), add_special_tokens=False)["input_ids"]
        self.prompts.append(self.tokenizer.decode(input_ids[0][kwargs["attention_mask"][0].bool()]))
        width = input_ids.shape[1]

        def force(ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            step = ids.shape[1] - width
            if step < len(script):
                scores = torch.full_like(scores, -float("inf"))
                scores[:, script[step]] = 0.0
            return scores

        processors = LogitsProcessorList([*(logits_processor or []), force])
        return self.model.generate(input_ids=input_ids, logits_processor=processors, **kwargs)
