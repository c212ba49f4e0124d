"""The official GLM-4 training layout (zai-org/GLM-4 finetune.py), in one place.

Rule: render the conversation with the tokenizer's own chat template, append one ``<|user|>``, mark the
tokens of trained assistant messages, then shift that mask right by one. So ``<|assistant|>`` is never a
target, while the reply and the token that follows it (``<|user|>``/``<|observation|>``) are. With
``combine=True`` only the last assistant message is trained and its leading role token is left unmarked,
so the ``\\n`` after it is not a target either.
"""

from __future__ import annotations

from typing import Any

from glmtune.glm4_texts import GLM4_DEFAULT_SYSTEM, GLM4_STOP_STRINGS, identity_system_text
from glmtune.layout.base import IGNORE_INDEX, EncodedSample, LayoutError, token_id
from glmtune.layout.template import TemplateLayout


def rewrite_tool_prompt(tokenizer: Any, name: str, author: str | None) -> None:
    """Make the tokenizer's chat template render the tool system prompt with the declared identity."""
    template = tokenizer.chat_template
    if not isinstance(template, str) or GLM4_DEFAULT_SYSTEM not in template:
        raise LayoutError(
            "identity.rewrite_tool_prompt: this chat template does not contain GLM-4's default tool system "
            "prompt, so there is nothing to rewrite"
        )
    tokenizer.chat_template = template.replace(GLM4_DEFAULT_SYSTEM, identity_system_text(name, author))


class Glm4Layout(TemplateLayout):
    """GLM-4 / GLM-4-0414: the template-driven layout plus the official ``combine`` detail.

    Through the general mechanism, GLM-4's template has no end-of-turn marker of its own, so the role token
    that follows a reply (``<|user|>``/``<|observation|>``, or the appended ``<|user|>``) is trained: this
    is exactly the official shifted mask. The one official detail on top: with ``combine=True`` the ``\n``
    right after the last ``<|assistant|>`` is not a target.
    """

    name = "glm4"

    def __init__(self, tokenizer: Any) -> None:
        super().__init__(tokenizer)
        self.assistant_id = token_id(tokenizer, "<|assistant|>")
        expected = [token_id(tokenizer, t) for t in GLM4_STOP_STRINGS]
        if sorted(self.stop_ids) != sorted(expected):
            raise LayoutError(f"the GLM-4 template ends replies with {self.stop_ids}, expected {expected} "
                              "(<|endoftext|>, <|user|>, <|observation|>)")
        self._stop_ids = expected

    def encode(self, messages: list[dict[str, Any]], combine: bool) -> EncodedSample:
        """Official ids and shifted-mask labels for one conversation, before truncation."""
        sample = super().encode(messages, combine)
        if combine:
            first = next((k for k, label in enumerate(sample.labels) if label != IGNORE_INDEX), None)
            if first is not None and sample.input_ids[first - 1] == self.assistant_id:
                sample.labels[first] = IGNORE_INDEX
        return sample
