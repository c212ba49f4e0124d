"""Token lengths and layout problems of conversations, measured with a model's tokenizer and chat template.

``glmtune data check --model`` hands a ``TokenMeasure`` to the data check, which knows nothing of layouts: it
asks for each kept conversation's (prompt, reply) token lengths and the problems only the template can see
(it cannot lay the conversation out, only its last reply can be trained, it is over ``max_length``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from glmtune.layout.base import ChatLayout
from glmtune.layout.encode import encode_one

Finding = tuple[str, str]  # (problem code, reason)


@dataclass
class Measured:
    """One conversation's token counts (None when the template cannot lay it out) and what was found."""

    prompt: int = 0
    reply: int = 0
    total: int | None = None
    problems: list[Finding] = field(default_factory=list)


@dataclass
class TokenMeasure:
    """Measure conversations with ``layout`` (its tokenizer counts texts); lengths over ``max_length`` are
    reported with what ``truncation`` does to them."""

    tokenizer: Any
    layout: ChatLayout
    max_length: int | None = None
    truncation: str = "keep_recent"

    @classmethod
    def from_model(cls, model: str, max_length: int | None = None, truncation: str = "keep_recent") -> TokenMeasure:
        """Load ``model``'s tokenizer and derive its layout."""
        from glmtune.layout.select import get_layout
        from glmtune.models import load_tokenizer

        tokenizer = load_tokenizer(model)
        return cls(tokenizer, get_layout(tokenizer), max_length, truncation)

    @property
    def thinks(self) -> bool:
        """The template has thinking."""
        return bool(getattr(self.layout, "thinks", False))

    def count(self, text: str) -> int:
        """Tokens of a plain text (no special tokens)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def __call__(self, messages: list[dict[str, Any]]) -> Measured:
        """Lengths of ``messages`` as trained with the last reply (the default), and the problems found."""
        try:
            sample = self.layout.encode(messages, combine=True)
        except Exception as exc:  # a template that cannot render this conversation: training would fail too
            return Measured(problems=[("layout_error", f"the chat template cannot lay this conversation out: {exc}")])
        total, reply = len(sample.input_ids), sample.num_trained
        found = Measured(total - reply, reply, total)
        try:  # every reply trained (data.combine: false) must lay out too
            self.layout.encode(messages, combine=False)
        except Exception as exc:
            found.problems.append(
                ("combine_only", f"only the last reply can be trained (data.combine: true, the default): {exc}"))
        if self.max_length is not None and total > self.max_length:
            found.problems.append(("too_long", self._too_long_reason(messages, total, reply)))
        return found

    def _too_long_reason(self, messages: list[dict[str, Any]], total: int, reply: int) -> str:
        """What training with ``truncation`` actually does to a conversation longer than ``max_length``."""
        assert self.max_length is not None
        fitted = encode_one(messages, self.layout, True, self.max_length, self.truncation)
        head = f"{total} tokens > --max-length {self.max_length}; truncation '{self.truncation}' "
        if fitted.problem is not None:
            return head + f"leaves no reply token to train on (the {reply}-token reply is cut): the sample is dropped"
        how = ("keeps the system prompt and the most recent turns that fit" if self.truncation == "keep_recent"
               else f"cuts the last {total - self.max_length} tokens")
        if fitted.trained_removed:
            return head + f"{how}: {fitted.trained_removed} of the reply's {reply} trained tokens are removed"
        return head + f"{how}: all {reply} trained tokens of the reply are kept"
