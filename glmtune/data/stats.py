"""Data-set statistics for ``glmtune data check``: lengths, turns, roles, tools, reasoning, language mix,
truncation."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from glmtune.data.repair import is_call

Message = dict[str, Any]
EDGES = (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
# Han (with extension A and compatibility ideographs), CJK punctuation, kana, hangul.
CJK = re.compile(r"[\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")


def histogram(values: list[int]) -> dict[str, int]:
    """Counts per power-of-two bucket ("0-31", "32-63", ..., "8192+"), empty buckets left out."""
    counts: Counter[str] = Counter()
    for value in values:
        low = 0
        for edge in EDGES:
            if value < edge:
                counts[f"{low}-{edge - 1}"] += 1
                break
            low = edge
        else:
            counts[f"{EDGES[-1]}+"] += 1
    order = [f"{lo}-{hi - 1}" for lo, hi in zip((0, *EDGES), EDGES)] + [f"{EDGES[-1]}+"]
    return {label: counts[label] for label in order if counts[label]}


def summarise(values: list[int]) -> dict[str, Any]:
    """Count, min, mean, p50/p90/p99, max and histogram of ``values`` (zeros when empty)."""
    if not values:
        return {"count": 0, "min": 0, "mean": 0.0, "p50": 0, "p90": 0, "p99": 0, "max": 0, "histogram": {}}
    ordered = sorted(values)

    def pct(p: float) -> int:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    return {
        "count": len(ordered),
        "min": ordered[0],
        "mean": round(sum(ordered) / len(ordered), 1),
        "p50": pct(0.5),
        "p90": pct(0.9),
        "p99": pct(0.99),
        "max": ordered[-1],
        "histogram": histogram(values),
    }


def char_lengths(messages: list[Message]) -> tuple[int, int]:
    """(prompt, reply) length in characters: the reply is the last assistant turn, the prompt the rest."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=len(messages))
    prompt = sum(len(m.get("content", "")) for m in messages[:last])
    reply = len(messages[last].get("content", "")) if last < len(messages) else 0
    return prompt, reply


def language(messages: list[Message]) -> str:
    """Language class of a conversation: cjk (any CJK character), latin (Latin letters only) or other."""
    text = "".join(m.get("content", "") for m in messages)
    if CJK.search(text):
        return "cjk"
    return "latin" if LATIN.search(text) else "other"


def conversation_stats(
    conversations: list[list[Message]],
    lengths: list[tuple[int, int]],
    unit: str,
    max_length: int | None = None,
    totals: list[int] | None = None,
    extras: list[dict[str, Any]] | None = None,
    measure: Callable[[str], int] = len,
) -> dict[str, Any]:
    """Statistics of the kept conversations; ``lengths`` are (prompt, reply) in ``unit`` per conversation.

    ``extras`` are the conversations' record extras (for ``enable_thinking``); ``measure`` counts a text in
    ``unit`` (characters by default), for the reasoning lengths."""
    n = len(conversations)
    roles: Counter[str] = Counter()
    turns: list[int] = []
    tool_names: Counter[str] = Counter()
    with_tools = with_calls = calls = 0
    langs: Counter[str] = Counter()
    for messages in conversations:
        roles.update(m["role"] for m in messages)
        turns.append(sum(1 for m in messages if m["role"] != "system"))
        called = [m["metadata"] for m in messages if is_call(m)]
        calls += len(called)
        tool_names.update(called)
        with_calls += bool(called)
        with_tools += any(m.get("tools") for m in messages)
        langs[language(messages)] += 1
    stats: dict[str, Any] = {
        "conversations": n,
        "length_unit": unit,
        "prompt_length": summarise([p for p, _ in lengths]),
        "reply_length": summarise([r for _, r in lengths]),
        "turns": {**summarise(turns), "histogram": dict(sorted(Counter(turns).items()))},
        "roles": dict(roles.most_common()),
        "tools": {
            "conversations_with_tools": with_tools,
            "conversations_with_calls": with_calls,
            "function_calls": calls,
            "called": dict(tool_names.most_common(10)),
        },
        "reasoning": reasoning_stats(conversations, extras or [], measure),
        "language": {
            key: {"count": langs[key], "share": _share(langs[key], n)} for key in ("cjk", "latin", "other")
        },
    }
    if totals is not None:
        stats["total_length"] = summarise(totals)
    if max_length is not None and totals is not None:
        cut = sum(1 for t in totals if t > max_length)
        stats["truncation"] = {"max_length": max_length, "truncated": cut, "share": _share(cut, n)}
    return stats


def reasoning_stats(conversations: list[list[Message]], extras: list[dict[str, Any]],
                    measure: Callable[[str], int] = len) -> dict[str, Any]:
    """Assistant messages with ``reasoning_content``, their share, reasoning lengths, non-thinking records."""
    replies = [m for messages in conversations for m in messages if m["role"] == "assistant"]
    lengths = [measure(m["reasoning_content"]) for m in replies if m.get("reasoning_content")]
    summary = summarise(lengths)
    return {
        "replies": len(replies),
        "with_reasoning": len(lengths),
        "share": _share(len(lengths), len(replies)),
        "length": {key: summary[key] for key in ("mean", "p50", "max")},
        "non_thinking_conversations": sum(1 for extra in extras if extra.get("enable_thinking") is False),
    }


def reasoning_warning(path: str, stats: dict[str, Any], template: Any) -> str | None:
    """The one-line warning for a file whose replies carry reasoning that the model's template drops.

    ``template`` tells whether the template ``thinks`` (a layout or a measure). None without one (no model: the
    template is unknown), without reasoning, or when the template thinks."""
    carried = stats.get("reasoning", {}).get("with_reasoning", 0)
    if template is None or not carried or getattr(template, "thinks", False):
        return None
    replies = "reply carries" if carried == 1 else "replies carry"
    return (f"{path}: {carried} {replies} reasoning, but this model's chat template has no thinking: the "
            "reasoning is dropped and only the answer is trained")


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def format_stats(stats: dict[str, Any]) -> list[str]:
    """Readable one-line summaries of ``conversation_stats`` output."""
    unit = stats["length_unit"]
    lines = []
    for key in ("prompt_length", "reply_length", "total_length"):
        s = stats.get(key)
        if s and s["count"]:
            hist = ", ".join(f"{k}: {v}" for k, v in s["histogram"].items())
            lines.append(
                f"{key.split('_')[0]} length ({unit}): p50 {s['p50']}, p90 {s['p90']}, "
                f"max {s['max']}, mean {s['mean']}  [{hist}]"
            )
    t = stats["turns"]
    if t["count"]:
        lines.append(f"turns per conversation (non-system): mean {t['mean']}, max {t['max']}")
    lines.append("roles: " + ", ".join(f"{k} {v}" for k, v in stats["roles"].items()))
    tools = stats["tools"]
    lines.append(
        f"tools: {tools['conversations_with_tools']} conversations declare tools, "
        f"{tools['conversations_with_calls']} call them ({tools['function_calls']} calls)"
    )
    lines.extend(_reasoning_lines(stats.get("reasoning"), unit))
    lang = stats["language"]
    lines.append("language: " + ", ".join(f"{k} {v['share']:.0%} ({v['count']})" for k, v in lang.items()))
    if "truncation" in stats:
        tr = stats["truncation"]
        lines.append(f"truncated at max_length {tr['max_length']}: {tr['truncated']} ({tr['share']:.1%})")
    return lines


def _reasoning_lines(reasoning: dict[str, Any] | None, unit: str) -> list[str]:
    """The reasoning summary line, or none when no reply reasons and no record turns thinking off."""
    if not reasoning or not (reasoning["with_reasoning"] or reasoning["non_thinking_conversations"]):
        return []
    length = reasoning["length"]
    line = (f"reasoning: {reasoning['with_reasoning']} of {reasoning['replies']} assistant replies "
            f"({reasoning['share']:.1%})")
    if reasoning["with_reasoning"]:
        line += f", length ({unit}) mean {length['mean']}, max {length['max']}"
    return [line + f"; non-thinking conversations: {reasoning['non_thinking_conversations']}"]
