"""Which layout a tokenizer gets: GLM-4's official one, or the layout derived from its chat template."""

from __future__ import annotations

from typing import Any

from glmtune.layout.base import ChatLayout, LayoutError
from glmtune.layout.glm4 import Glm4Layout
from glmtune.layout.template import TemplateLayout


def get_layout(tokenizer: Any) -> ChatLayout:
    """Pick the layout for ``tokenizer`` from its special tokens and chat template."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise LayoutError("the tokenizer has no chat template; glmtune derives the layout from it")
    vocab = tokenizer.get_vocab()
    if all(t in vocab for t in ("[gMASK]", "<sop>", "<|user|>", "<|assistant|>", "<|observation|>")):
        return Glm4Layout(tokenizer)
    return TemplateLayout(tokenizer)
