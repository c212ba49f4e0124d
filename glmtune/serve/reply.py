"""Turn generated token ids into a reply: streamed content deltas, stop ids and strings, tool calls, loops."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from glmtune.serve.schemas import ToolCall
from glmtune.serve.tool_syntax import GLM4_SYNTAX, ToolSyntax

if TYPE_CHECKING:
    from glmtune.infer.runaway import LoopRule


class ReplyBuilder:
    """Turn generated ids into content deltas: stop ids and strings, tool-call detection, trimming.

    Content is the decoded reply with surrounding whitespace stripped; trailing whitespace and a possible
    beginning of a stop string are held back until later text shows they belong to the reply, so the
    streamed deltas always concatenate to exactly the final content. With a ``loop_rule`` a reply whose
    ids end in a loop is cut there with ``finish_reason`` ``length`` and ``looped`` set.
    """

    def __init__(self, tokenizer: Any, stop_ids: list[int], max_tokens: int, stop: list[str] | None = None,
                 tool_names: list[str] | None = None, loop_rule: LoopRule | None = None,
                 syntax: ToolSyntax | None = GLM4_SYNTAX) -> None:
        self.tokenizer = tokenizer
        self.syntax = syntax
        self.stop_ids = set(stop_ids)
        self.max_tokens = max_tokens
        self.stop = [s for s in (stop or []) if s]
        self.tool_names = list(tool_names or []) if syntax is not None else []
        self.ids: list[int] = []
        self.num_tokens = 0
        self.raw = ""
        self.content = ""
        self.mode = self._classify("")
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

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _detokenize(self, final: bool) -> None:
        prefix = self._decode(self.ids[self._prefix_offset:self._read_offset])
        full = self._decode(self.ids[self._prefix_offset:])
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
        if self.mode is None:
            self.mode = self._classify(self.raw)
        return self._text_delta(final=False) if self.mode == "text" else ""

    def close(self) -> str:
        """Finish the reply (generation ended); return the last content delta. Calling it again is a no-op."""
        if self._closed:
            return ""
        self.finished = self._closed = True
        self._detokenize(final=True)
        if self.mode != "text":
            calls = self.syntax.parse(self.raw, self.tool_names) if self.syntax is not None else None
            if calls:
                self.tool_calls, self.finish_reason = calls, "tool_calls"
                return ""
            self.mode = "text"
        return self._text_delta(final=True)

    def _classify(self, text: str) -> Literal["tool", "text"] | None:
        return self.syntax.classify(text, self.tool_names) if self.syntax is not None else "text"

    def _text_delta(self, final: bool) -> str:
        visible = self.raw.lstrip()
        # sent content never holds a stop string nor its beginning, so a match can only start after it
        start = len(self.content)
        cut = min((i for i in (visible.find(s, start) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            visible, final = visible[:cut], True
            self.finished, self.finish_reason = True, "stop"
        sendable = visible if final else visible[:len(visible) - self._held(visible)]
        end = len(sendable.rstrip())
        delta = visible[len(self.content):end] if end > len(self.content) else ""
        self.content += delta
        return delta

    def _held(self, text: str) -> int:
        """Length of the longest tail of ``text`` that could start a stop string."""
        best = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:k]):
                    best = k
                    break
        return best
