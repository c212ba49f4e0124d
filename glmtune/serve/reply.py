"""Turn generated token ids into a reply: streamed reasoning and content deltas, stop ids and strings, tool
calls, loops."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from glmtune.infer.reply_text import CLOSE, ReasoningMode, ReplyDecoder, partial_reasoning, split_reasoning
from glmtune.serve.schemas import ToolCall
from glmtune.serve.tool_syntax import GLM4_SYNTAX, ToolSyntax

if TYPE_CHECKING:
    from glmtune.infer.runaway import LoopRule


def _partial_tail(text: str, marks: list[str]) -> int:
    """Length of the longest tail of ``text`` that could start one of ``marks``."""
    best = 0
    for mark in marks:
        for k in range(min(len(mark) - 1, len(text)), best, -1):
            if text.endswith(mark[:k]):
                best = k
                break
    return best


class ReplyBuilder:
    """Turn generated ids into reasoning and content deltas: stop ids and strings, tool-call detection, trimming.

    Ids are decoded with the family's markup tags kept (``keep``). With a ``reasoning`` mode (a thinking
    template) the reply's reasoning goes to :attr:`reasoning` (its deltas through :meth:`take_reasoning`)
    and the answer after it is the content. Content is the decoded answer with surrounding whitespace
    stripped; trailing whitespace, a possible beginning of a stop string and, for syntaxes whose calls start
    with a fixed tag, a possible call block are held back until later text shows they belong to the content,
    so the streamed deltas always concatenate to exactly the final content. Text followed by call blocks
    comes back as content plus tool calls. With a ``loop_rule`` a reply whose ids end in a loop is cut there
    with ``finish_reason`` ``length`` and ``looped`` set.
    """

    def __init__(self, tokenizer: Any, stop_ids: list[int], max_tokens: int, stop: list[str] | None = None,
                 tool_names: list[str] | None = None, loop_rule: LoopRule | None = None,
                 syntax: ToolSyntax | None = GLM4_SYNTAX, keep: frozenset[int] = frozenset(),
                 reasoning: ReasoningMode = None) -> None:
        self.decoder = ReplyDecoder(tokenizer, keep)
        self.syntax = syntax
        self.stop_ids = set(stop_ids)
        self.max_tokens = max_tokens
        self.stop = [s for s in (stop or []) if s]
        self.tool_names = list(tool_names or []) if syntax is not None else []
        self.reasoning_mode = reasoning
        self.ids: list[int] = []
        self.num_tokens = 0
        self.raw = ""
        self.content = ""
        self.reasoning = ""  # sent so far; the whole reasoning once closed
        self._reasoning_delta = ""
        self.mode = self._classify("") if reasoning is None else None
        self.finished = False
        self.finish_reason = "length"
        self.tool_calls: list[ToolCall] | None = None
        self.loop_rule = loop_rule
        self.looped = False
        self._tail_loops: Callable[[list[int], LoopRule], bool] | None = None
        if loop_rule is not None:
            from glmtune.infer.runaway import tail_loops  # imports torch: only once a guard is wanted

            self._tail_loops = tail_loops
        self._prefix_offset = 0
        self._read_offset = 0
        self._closed = False

    def _detokenize(self, final: bool) -> None:
        prefix = self.decoder.decode(self.ids[self._prefix_offset:self._read_offset])
        full = self.decoder.decode(self.ids[self._prefix_offset:])
        if len(full) > len(prefix) and (final or not full.endswith("\ufffd")):
            self.raw += full[len(prefix):]
            self._prefix_offset = self._read_offset
            self._read_offset = len(self.ids)

    def add(self, token_id: int) -> str:
        """Take one generated id; return the content that can be sent now (possibly empty)."""
        if self.finished:
            return ""
        self.num_tokens += 1
        if token_id in self.stop_ids:
            self.finished, self.finish_reason = True, "stop"
            return self.close()
        self.ids.append(token_id)
        self._detokenize(final=False)
        if self._tail_loops is not None and self.loop_rule is not None:
            self.looped = self._tail_loops(self.ids, self.loop_rule)
        if self.looped or self.num_tokens >= self.max_tokens:
            self.finished, self.finish_reason = True, "length"
            return self.close()
        answer = self._answer(final=False)
        if answer is None:
            return ""
        if self.mode is None:
            self.mode = self._classify(answer)
        return self._text_delta(answer, final=False) if self.mode == "text" else ""

    def take_reasoning(self) -> str:
        """The reasoning written since the last call (empty for a template without thinking)."""
        delta, self._reasoning_delta = self._reasoning_delta, ""
        return delta

    def close(self) -> str:
        """Finish the reply (generation ended); return the last content delta. Calling it again is a no-op."""
        if self._closed:
            return ""
        self.finished = self._closed = True
        self._detokenize(final=True)
        answer = self._answer(final=True) or ""
        if self.mode != "text" or self.syntax is not None and self.syntax.call_at(answer) >= 0:
            at = max(self.syntax.call_at(answer), 0) if self.syntax is not None else 0
            calls = self.syntax.parse(answer[at:], self.tool_names) if self.syntax is not None else None
            if calls:
                self.tool_calls, self.finish_reason = calls, "tool_calls"
                return self._text_delta(answer[:at], final=True, hold_calls=False) if at else ""
            self.mode = "text"
        return self._text_delta(answer, final=True, hold_calls=False)

    def _answer(self, final: bool) -> str | None:
        """The answer written so far (None while the reasoning is open), sending new reasoning on the way."""
        if self.reasoning_mode is None:
            return self.raw
        if final:
            reasoning, answer = split_reasoning(self.raw, self.reasoning_mode)
            self._send_reasoning(reasoning, final=True)
            closed = partial_reasoning(self.raw, self.reasoning_mode)[1]
            return closed if closed is not None else answer
        reasoning, answer = partial_reasoning(self.raw, self.reasoning_mode)
        visible = reasoning.lstrip()
        if answer is None:
            visible = visible[:len(visible) - _partial_tail(visible, [CLOSE])]
        self._send_reasoning(visible.rstrip())
        return answer

    def _send_reasoning(self, text: str, final: bool = False) -> None:
        if len(text) > len(self.reasoning) and text.startswith(self.reasoning):
            self._reasoning_delta += text[len(self.reasoning):]
            self.reasoning = text
        elif final:  # the whole reasoning, even where the text it streamed from was decoded differently
            self.reasoning = text

    def _classify(self, text: str) -> Literal["tool", "text"] | None:
        return self.syntax.classify(text, self.tool_names) if self.syntax is not None else "text"

    def _text_delta(self, answer: str, final: bool, hold_calls: bool = True) -> str:
        visible = answer.lstrip()
        # sent content never holds a stop string nor its beginning, so a match can only start after it
        start = len(self.content)
        cut = min((i for i in (visible.find(s, start) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            visible, final = visible[:cut], True
            self.finished, self.finish_reason = True, "stop"
        if self.tool_names and hold_calls and self.syntax is not None and self.syntax.prefix:
            at = self.syntax.call_at(visible)  # a call block may follow the text: not content until it fails
            visible = visible[:at] if at >= 0 else visible[:len(visible) - _partial_tail(visible, [self.syntax.prefix])]
        sendable = visible if final else visible[:len(visible) - _partial_tail(visible, self.stop)]
        end = len(sendable.rstrip())
        delta = visible[len(self.content):end] if end > len(self.content) else ""
        self.content += delta
        return delta
