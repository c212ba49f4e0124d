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
# The fixed texts glm-4-9b-chat's template puts around tool definitions (reference §2).
GLM4_DEFAULT_SYSTEM = (
    "你是一个名为 ChatGLM 的人工智能助手。你是基于智谱AI训练的语言模型 GLM-4 模型开发的，"
    "你的任务是针对用户的问题和要求提供适当的答复和支持。"
)
GLM4_TOOL_SUFFIX = "在调用上述函数时，请使用 Json 格式表示调用的参数。"


def identity_system_text(name: str, author: str | None) -> str:
    """The tool system prompt's first sentence with a declared identity instead of ChatGLM / Zhipu AI."""
    made = f"你是由{author}开发的，" if author else ""
    return f"你是一个名为 {name} 的人工智能助手。{made}你的任务是针对用户的问题和要求提供适当的答复和支持。"


def rewrite_tool_prompt(tokenizer: Any, name: str, author: str | None) -> None:
    """Make the tokenizer's chat template render the tool system prompt with the declared identity."""
    template = tokenizer.chat_template
    if not isinstance(template, str) or GLM4_DEFAULT_SYSTEM not in template:
        raise LayoutError(
            "identity.rewrite_tool_prompt: this chat template does not contain GLM-4's default tool system "
            "prompt, so there is nothing to rewrite"
        )
    tokenizer.chat_template = template.replace(GLM4_DEFAULT_SYSTEM, identity_system_text(name, author))


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
