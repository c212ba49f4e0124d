"""The official GLM-4 training layout (zai-org/GLM-4 finetune.py), in one place.

Rule: render the conversation with the tokenizer's own chat template, append one ``<|user|>``, mark the
tokens of trained assistant messages, then shift that mask right by one. So ``<|assistant|>`` is never a
target, while the reply and the token that follows it (``<|user|>``/``<|observation|>``) are. With
``combine=True`` only the last assistant message is trained and its leading role token is left unmarked,
so the ``\\n`` after it is not a target either.
"""

from __future__ import annotations

from typing import Any

from glmtune.layout.base import (
    IGNORE_INDEX,
    EncodedSample,
    LayoutError,
    message_spans,
    template_ids,
    token_id,
    tokens_by_message,
)

GLM4_STOP_STRINGS = ("<|endoftext|>", "<|user|>", "<|observation|>")


class Glm4Layout:
    """GLM-4 / GLM-4-0414 layout; every id is looked up by its token string."""

    name = "glm4"

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.user_id = token_id(tokenizer, "<|user|>")
        self.assistant_id = token_id(tokenizer, "<|assistant|>")
        self._stop_ids = [token_id(tokenizer, t) for t in GLM4_STOP_STRINGS]

    @property
    def stop_ids(self) -> list[int]:
        """``<|endoftext|>``, ``<|user|>``, ``<|observation|>``: generation stops on any of them."""
        return list(self._stop_ids)

    def trained_messages(self, messages: list[dict[str, Any]], combine: bool) -> set[int]:
        """Indices of assistant messages whose tokens are learned in this mode."""
        assistant = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        if combine:
            assistant = assistant[-1:]
        return {i for i in assistant if messages[i].get("loss", True) is not False}

    def encode(self, messages: list[dict[str, Any]], combine: bool) -> EncodedSample:
        """Official ids and shifted-mask labels for one conversation, before truncation."""
        text, spans = message_spans(self.tokenizer, messages)
        ids, owners = tokens_by_message(self.tokenizer, text, spans)
        trained = self.trained_messages(messages, combine)
        mask = [owner in trained for owner in owners]
        if combine and trained:
            (last,) = trained
            first = owners.index(last)
            if ids[first] != self.assistant_id:
                raise LayoutError("the last assistant message does not start with <|assistant|>")
            mask[first] = False
        ids.append(self.user_id)
        mask.append(False)
        labels = [IGNORE_INDEX] + [tid if prev else IGNORE_INDEX for tid, prev in zip(ids[1:], mask[:-1])]
        return EncodedSample(input_ids=ids, labels=labels)

    def prompt_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        """The conversation so far plus ``<|assistant|>``, exactly as the chat template renders it."""
        return template_ids(self.tokenizer, messages, add_generation_prompt=True)
