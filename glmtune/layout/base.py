"""The layout interface and the template-span machinery every chat layout shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from glmtune.errors import UserError

IGNORE_INDEX = -100


class LayoutError(UserError):
    """The tokenizer or its chat template cannot produce a trustworthy layout."""


@dataclass
class EncodedSample:
    """One conversation as token ids and labels (``-100`` where nothing is learned)."""

    input_ids: list[int]
    labels: list[int]

    @property
    def num_trained(self) -> int:
        """Number of supervised tokens."""
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


class ChatLayout(Protocol):
    """What training, inference and serving need to know about a model family's chat format."""

    name: str

    def encode(self, messages: list[dict[str, Any]], combine: bool, train_reasoning: bool = True) -> EncodedSample:
        """Full training sample for ``messages`` (untruncated); ``train_reasoning`` False leaves reasoning
        in the input but untrained."""
        ...

    def prompt_ids(self, messages: list[dict[str, Any]], enable_thinking: bool | None = None) -> list[int]:
        """Ids of ``messages`` followed by the generation prompt, ready for ``generate``."""
        ...

    def to_template(self, messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        """``messages`` and the top-level tools in the form the chat template reads."""
        ...

    @property
    def stop_ids(self) -> list[int]:
        """Token ids that end a reply."""
        ...

    @property
    def thinks(self) -> bool:
        """The template has thinking (it renders reasoning or opens a think block in its prompt)."""
        ...


def token_id(tokenizer: Any, token: str) -> int:
    """Look a special token up by its string; fail clearly when the tokenizer lacks it."""
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or (tokenizer.unk_token_id is not None and tid == tokenizer.unk_token_id and token != tokenizer.unk_token):
        raise LayoutError(f"the tokenizer has no token {token!r}")
    return int(tid)


def render(tokenizer: Any, messages: list[dict[str, Any]], add_generation_prompt: bool = False) -> str:
    """Render ``messages`` to text with the tokenizer's own chat template."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def template_ids(tokenizer: Any, messages: list[dict[str, Any]], add_generation_prompt: bool = False,
                 tools: list[dict[str, Any]] | None = None, **kwargs: Any) -> list[int]:
    """The tokenizer's own tokenized rendering (whatever shape its ``apply_chat_template`` returns)."""
    if tools is not None:
        kwargs["tools"] = tools
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt,
                                        **kwargs)
    if hasattr(out, "keys"):
        out = out["input_ids"]
    if out and isinstance(out[0], list):  # some tokenizers return a batch of one
        out = out[0]
    return [int(x) for x in out]
