"""The official GLM-4 training layout (zai-org/GLM-4 finetune.py), in one place.

Rule: render the conversation with the tokenizer's own chat template, append one ``<|user|>``, mark the
tokens of trained assistant messages, then shift that mask right by one. So ``<|assistant|>`` is never a
target, while the reply and the token that follows it (``<|user|>``/``<|observation|>``) are. With
``combine=True`` only the last assistant message is trained and its leading role token is left unmarked,
so the ``\\n`` after it is not a target either.

One deliberate deviation: a record that ends with a tool call ends it with ``<|observation|>`` (what the
template writes after a call, and what the model must emit there); finetune.py appends ``<|user|>`` whatever
came last.
"""

from __future__ import annotations

from typing import Any

from glmtune.glm4_texts import (
    GLM4_DEFAULT_SYSTEM,
    GLM4_STOP_STRINGS,
    GLM_Z1_DEFAULT_SYSTEM,
    identity_system_text,
)
from glmtune.layout.base import IGNORE_INDEX, EncodedSample, LayoutError, token_id
from glmtune.layout.messages import Dialect
from glmtune.layout.template import TemplateLayout
from glmtune.layout.thinking import Thinking


def rewrite_tool_prompt(tokenizer: Any, name: str, author: str | None) -> None:
    """Make the tokenizer's chat template render the tool system prompt with the declared identity."""
    template = tokenizer.chat_template
    found = [text for text in (GLM4_DEFAULT_SYSTEM, GLM_Z1_DEFAULT_SYSTEM) if isinstance(template, str) and text in template]
    if not found:
        raise LayoutError(
            "identity.rewrite_tool_prompt: this chat template does not contain GLM-4's default tool system "
            "prompt, so there is nothing to rewrite"
        )
    tokenizer.chat_template = template.replace(found[0], identity_system_text(name, author))


def glm_generation(dialect: Dialect, thinking: Thinking) -> str:
    """Which GLM generation a template with GLM-4's special tokens renders like, from its probed behaviour."""
    if dialect.native:
        return "glm4"  # tools on a message, calls as metadata, results as observation: glm-4-9b-chat
    if thinking.reads_reasoning:
        return "glm4-moe"  # GLM-4.5/4.6: reasoning_content, XML tool calls, past reasoning dropped
    if thinking.opens_think:
        return "glm-z1"  # the generation prompt opens <think>
    return "glm4-0414"


OFFICIAL_COMBINE = ("glm4", "glm4-0414")  # generations whose template writes the "\n" after <|assistant|>


class Glm4Layout(TemplateLayout):
    """The GLM family (glm-4-9b-chat, 0414, Z1, 4.5/4.6): the template-driven layout plus the official
    ``combine`` detail; ``name`` says which generation the template renders like.

    Through the general mechanism, GLM-4's template has no end-of-turn marker of its own, so the role token
    that follows a reply (``<|user|>``/``<|observation|>``, or the appended ``<|user|>``) is trained: this
    is exactly the official shifted mask. The one official detail on top: with ``combine=True`` the ``\n``
    right after the last ``<|assistant|>`` is not a target. It belongs to the generations whose template writes
    that ``\n`` itself (glm-4-9b-chat, 0414); a GLM-4.5 model writes ``\n<think>`` after ``<|assistant|>``
    and must learn to, so there the reply is trained from its first token.
    """

    name = "glm4"

    def __init__(self, tokenizer: Any) -> None:
        super().__init__(tokenizer)
        self.name = glm_generation(self.dialect, self.thinking)
        self.assistant_id = token_id(tokenizer, "<|assistant|>")
        expected = [token_id(tokenizer, t) for t in GLM4_STOP_STRINGS]
        if sorted(self.stop_ids) != sorted(expected):
            raise LayoutError(f"the GLM-4 template ends replies with {self.stop_ids}, expected {expected} "
                              "(<|endoftext|>, <|user|>, <|observation|>)")
        self._stop_ids = expected

    def encode(self, messages: list[dict[str, Any]], combine: bool, train_reasoning: bool = True) -> EncodedSample:
        """Official ids and shifted-mask labels for one conversation, before truncation."""
        sample = super().encode(messages, combine, train_reasoning)
        if combine and self.name in OFFICIAL_COMBINE:
            first = next((k for k, label in enumerate(sample.labels) if label != IGNORE_INDEX), None)
            if first is not None and sample.input_ids[first - 1] == self.assistant_id:
                sample.labels[first] = IGNORE_INDEX
        return sample
