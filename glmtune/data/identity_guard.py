"""Warn before training a new identity on data that teaches the old one (ChatGLM by Zhipu AI).

Two sources: GLM-4's chat template injects a fixed system text ("你是一个名为 ChatGLM 的人工智能助手…") into
every conversation whose messages carry ``tools``, and replies or system prompts may name the old model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from glmtune.data.conversation import Conversation
from glmtune.glm4_texts import GLM4_TOOL_SYSTEM
from glmtune.identity_names import OLD_NAMES

MAX_SAMPLES = 5
_SNIPPET = 100
_GAP = "\x00"


@dataclass
class IdentityScan:
    """What in a data set asserts the old identity, with up to five ``source: text`` samples per kind."""

    name: str
    author: str | None
    conversations: int = 0
    tool_prompt: int = 0  # conversations whose GLM-4 tool system prompt says "ChatGLM"
    tool_prompt_samples: list[str] = field(default_factory=list)
    old_identity: int = 0  # assistant replies and system prompts that name an old identity
    old_identity_samples: list[str] = field(default_factory=list)
    old_names_found: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """True when nothing asserts the old identity."""
        return not (self.tool_prompt or self.old_identity)


def scan_identity(
    conversations: Sequence[Conversation | list[dict[str, Any]]],
    name: str,
    author: str | None,
    old_names: Sequence[str] = OLD_NAMES,
) -> IdentityScan:
    """Count tool conversations (the template asserts ChatGLM) and texts naming an old identity.

    Matching is case-insensitive by substring, after every occurrence of the new ``name`` and ``author`` is
    removed, so a new name that contains an old one (say "GLM-4-Helper") is not counted.
    """
    scan = IdentityScan(name=name, author=author)
    new_terms = sorted((t.casefold() for t in (name, author or "") if t and t.strip()), key=len, reverse=True)
    old_terms = [(t, t.casefold()) for t in old_names if t and t.strip()]
    found: set[str] = set()
    for index, conv in enumerate(conversations, start=1):
        messages, source = (conv.messages, conv.source) if isinstance(conv, Conversation) else (conv, "")
        source = source or f"conversation {index}"
        scan.conversations += 1
        tools = [
            t
            for m in messages
            if isinstance(m, dict) and isinstance(m.get("tools"), list)
            for t in m["tools"]
        ]
        if tools:
            scan.tool_prompt += 1
            if len(scan.tool_prompt_samples) < MAX_SAMPLES:
                scan.tool_prompt_samples.append(f"{source}: declares tools ({_tool_list(tools)})")
        for msg in messages:
            if (
                not isinstance(msg, dict)
                or msg.get("role") not in ("assistant", "system")
                or msg.get("metadata")
            ):
                continue
            text = msg.get("content")
            if not isinstance(text, str) or not text:
                continue
            rest = text.casefold()
            for term in new_terms:
                rest = rest.replace(term, _GAP * len(term))
            hits = [(rest.find(folded), term) for term, folded in old_terms if folded in rest]
            if not hits:
                continue
            scan.old_identity += 1
            found.update(term for _, term in hits)
            if len(scan.old_identity_samples) < MAX_SAMPLES:
                scan.old_identity_samples.append(f"{source}: {_snippet(text, min(hits)[0])}")
    scan.old_names_found = [t for t, _ in old_terms if t in found]
    return scan


def _tool_list(tools: list[Any]) -> str:
    names = []
    for tool in tools:
        tool = tool if isinstance(tool, dict) else {}
        fn = tool.get("function") if isinstance(tool.get("function"), dict) else {}
        names.append(str(fn.get("name") or tool.get("name") or tool.get("type") or "?"))
    return ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")


def _snippet(text: str, at: int) -> str:
    """About ``_SNIPPET`` characters of ``text`` around ``at`` (approximate after case folding)."""
    start = max(0, min(at - _SNIPPET // 3, len(text) - _SNIPPET))
    piece = " ".join(text[start:start + _SNIPPET].split())
    return ("…" if start > 0 else "") + piece + ("…" if start + _SNIPPET < len(text) else "")


def format_warning(scan: IdentityScan) -> str | None:
    """A readable warning for the trainer when the data teaches the old identity, else None."""
    if scan.clean:
        return None
    who = repr(scan.name) + (f" by {scan.author!r}" if scan.author else "")
    lines = [f"identity.name is {who}, but the training data asserts the old identity:"]
    if scan.tool_prompt:
        lines.append(
            f"- {scan.tool_prompt} of {scan.conversations} conversations carry tools: GLM-4's chat template "
            f'then injects its fixed system text "{GLM4_TOOL_SYSTEM}…" (ChatGLM, made by Zhipu AI), so every '
            "tool-calling sample trains the old name. Mix in enough identity samples (also ones with tools) "
            "to outweigh it."
        )
        lines.extend(f"    {s}" for s in scan.tool_prompt_samples)
    if scan.old_identity:
        names = ", ".join(scan.old_names_found)
        lines.append(
            f"- {scan.old_identity} assistant replies or system prompts name an old identity ({names}); "
            "rewrite them or drop them."
        )
        lines.extend(f"    {s}" for s in scan.old_identity_samples)
    return "\n".join(lines)
