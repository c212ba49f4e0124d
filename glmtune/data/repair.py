"""The rules ``glmtune data check`` applies to one conversation, its repairs, and the keys it dedupes on."""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

from glmtune.data.conversation import role_order
from glmtune.data.formats.common import RecordError, parse_tools
from glmtune.data.placeholders import fill_placeholders, find_placeholders

Message = dict[str, Any]
_SPACES = re.compile(r"\s+")


@dataclass
class Repair:
    """One change made to a record on its way to the fixed output."""

    source: str
    code: str  # e.g. "trimmed_whitespace", "merged_turns", "removed_duplicate"
    detail: str

    def __str__(self) -> str:
        return f"{self.source}: ({self.code}) {self.detail}"

    def as_dict(self) -> dict[str, str]:
        """The repair as a JSON-ready dict."""
        return asdict(self)


def is_call(msg: Message) -> bool:
    """True for a GLM-4 function call: an assistant message whose ``metadata`` names the function."""
    return msg.get("role") == "assistant" and bool(msg.get("metadata"))


def is_empty(msg: Message) -> bool:
    """True for a blank turn that is not a function call (nor, unless it is a reply, a carrier of tools)."""
    content = msg.get("content")
    if isinstance(content, str) and content.strip() or is_call(msg):
        return False
    return not msg.get("tools") or msg.get("role") == "assistant"


def tool_names(messages: list[Message]) -> set[str]:
    """Names of every tool declared on any message (function names, or the type of built-in tools)."""
    names: set[str] = set()
    for msg in messages:
        tools = msg.get("tools")
        for tool in tools if isinstance(tools, list) else []:
            if not isinstance(tool, dict):
                continue
            fn = tool.get("function")
            if isinstance(fn, dict) and isinstance(fn.get("name"), str):
                names.add(fn["name"])
            elif isinstance(tool.get("name"), str):
                names.add(tool["name"])
            elif isinstance(tool.get("type"), str):
                names.add(tool["type"])
    return names


def parse_message_tools(messages: list[Any]) -> tuple[list[Any], list[tuple[str, str]], list[str]]:
    """Turn ``tools`` given as a JSON string (or bare schemas) into GLM-4 tool lists.

    Returns (messages, problems as (code, reason), repair details); raises ``RecordError`` (``bad_tools``)
    when a ``tools`` value cannot be read at all.
    """
    out: list[Any] = []
    problems: list[tuple[str, str]] = []
    details: list[str] = []
    for i, msg in enumerate(messages, start=1):
        tools = msg.get("tools") if isinstance(msg, dict) else None
        if tools is None or not isinstance(tools, (str, list, dict)):
            out.append(msg)
            continue
        try:
            parsed = parse_tools(tools)
        except RecordError as exc:
            raise RecordError("bad_tools", f"message {i}: {exc.reason}") from None
        if isinstance(tools, str):
            problems.append(("stringified_tools", f"message {i} has 'tools' as a JSON string, not a list"))
        elif parsed != tools:
            problems.append(("unwrapped_tools", f"message {i} has tools not shaped as GLM-4 wants (a list of "
                             "{'type': 'function', 'function': {...}}); its template skips the others"))
        if parsed != tools:
            details.append(f"message {i}")
            msg = {**msg, "tools": parsed}
        out.append(msg)
    return out, problems, details


def validate_messages(messages: list[Message]) -> list[tuple[str, str]]:
    """(code, reason) for every content, role-order and tool-call problem of normalised GLM-4 ``messages``."""
    found: list[tuple[str, str]] = []
    view: list[tuple[int, Message]] = []  # what the template renders: empty turns render nothing
    for i, msg in enumerate(messages, start=1):
        if is_empty(msg):
            found.append(("empty_content", f"message {i} ({msg['role']}) is empty; GLM-4's template renders "
                          "nothing for it"))
        else:
            view.append((i, msg))
    for (i, a), (j, b) in zip(view, view[1:]):
        if mergeable(a, b):
            found.append(("repeated_role", f"messages {i} and {j} are consecutive {a['role']} turns"))
    found.extend(role_order([m["role"] for _, m in view], [i for i, _ in view]))
    found.extend(_call_order(view))
    declared = tool_names(messages)
    for i, msg in view:
        if not is_call(msg):
            continue
        try:
            json.loads(msg["content"])
        except (ValueError, RecursionError):
            found.append(("bad_tool_call", f"message {i} calls {msg['metadata']!r} but its content is not "
                          "JSON"))
        if msg["metadata"] not in declared:
            known = ", ".join(sorted(declared)) or "no tools are declared"
            found.append(("unknown_tool", f"message {i} calls {msg['metadata']!r}, which the conversation's "
                          f"tools do not declare ({known})"))
    if not any(m["role"] == "assistant" for _, m in view):
        why = "only empty assistant turns, which render nothing" if any(
            m["role"] == "assistant" for m in messages) else "no assistant turn"
        found.append(("no_reply", f"no assistant reply to train on ({why})"))
    return found


def _call_order(view: list[tuple[int, Message]]) -> list[tuple[str, str]]:
    """A run of k function calls must be followed by k observations (unless the calls end it all)."""
    found: list[tuple[str, str]] = []
    pos = 0
    while pos < len(view):
        if not is_call(view[pos][1]):
            if view[pos][1]["role"] == "observation":
                found.append(("orphan_observation", f"message {view[pos][0]} is an observation that does not "
                              "follow a function call"))
            pos += 1
            continue
        end = pos
        while end < len(view) and is_call(view[end][1]):
            end += 1
        stop = end
        while stop < len(view) and view[stop][1]["role"] == "observation":
            stop += 1
        calls, results = end - pos, stop - end
        if end < len(view) and results < calls:
            for i, msg in view[pos + results:end]:
                found.append(("missing_observation", f"message {i} calls {msg['metadata']!r} but no "
                              "observation follows it"))
        for i, _ in view[end + calls:stop]:
            found.append(("orphan_observation", f"message {i} is an observation with no function call left "
                          "to answer"))
        pos = stop
    return found


def fill(messages: list[Message], values: dict[str, str]) -> tuple[list[Message], list[str]]:
    """Fill ``{{name}}`` placeholders from ``values``; returns the messages and the names filled."""
    if not values:
        return messages, []
    present = find_placeholders(messages)
    filled = sorted(present & set(values))
    return (fill_placeholders(messages, values) if filled else messages), filled


def clean_texts(messages: list[Message]) -> tuple[list[Message], list[int], list[int]]:
    """Strip and NFC-normalise every text (full-width punctuation stays); returns (messages, trimmed, nfc)."""
    out: list[Message] = []
    trimmed: list[int] = []
    normalised: list[int] = []
    for i, msg in enumerate(messages, start=1):
        msg = dict(msg)
        for key in ("content", "metadata"):
            text = msg.get(key)
            if not isinstance(text, str):
                continue
            nfc = unicodedata.normalize("NFC", text)
            if nfc != text and i not in normalised:
                normalised.append(i)
            stripped = nfc.strip()
            if stripped != nfc and i not in trimmed:
                trimmed.append(i)
            msg[key] = stripped
        out.append(msg)
    return out, trimmed, normalised


def drop_empty(messages: list[Message]) -> tuple[list[Message], list[str]]:
    """Drop blank turns (a blank reply's tools move to an empty system turn); returns what was dropped."""
    kept: list[Message] = []
    dropped: list[str] = []
    for i, msg in enumerate(messages, start=1):
        if not is_empty(msg):
            kept.append(msg)
            continue
        dropped.append(f"message {i} ({msg['role']})")
        if msg.get("tools"):
            kept.append({"role": "system", "content": "", "tools": msg["tools"]})
            dropped[-1] += " (its tools kept on a system turn)"
    return kept, dropped


def mergeable(a: Message, b: Message) -> bool:
    """True when ``b`` repeats ``a``'s role in a way the repair merges (user/user, assistant/assistant)."""
    return (a["role"] == b["role"] and a["role"] in ("user", "assistant")
            and not (is_call(a) or is_call(b) or a.get("tools") or b.get("tools")))


def merge_repeated(messages: list[Message]) -> tuple[list[Message], int]:
    """Join consecutive user/user or assistant/assistant (not calls) turns with "\\n"; returns merges made."""
    out: list[Message] = []
    merges = 0
    for msg in messages:
        if out and mergeable(out[-1], msg):
            prev = out[-1]
            joined: Message = {"role": prev["role"], "content": prev["content"] + "\n" + msg["content"]}
            if prev.get("loss") is False and msg.get("loss") is False:
                joined["loss"] = False
            out[-1] = joined
            merges += 1
        else:
            out.append(dict(msg))
    return out, merges


def repair_messages(source: str, messages: list[Message]) -> tuple[list[Message], list[Repair]]:
    """Trim + NFC every text, drop empty turns, merge repeated roles; each change listed as a ``Repair``."""
    repairs: list[Repair] = []
    messages, trimmed, normalised = clean_texts(messages)
    if trimmed:
        repairs.append(Repair(source, "trimmed_whitespace", _which(trimmed)))
    if normalised:
        repairs.append(Repair(source, "nfc_normalised", _which(normalised)))
    messages, dropped = drop_empty(messages)
    if dropped:
        repairs.append(Repair(source, "dropped_empty_turn", ", ".join(dropped)))
    messages, merges = merge_repeated(messages)
    if merges:
        detail = f"{merges} consecutive same-role turn(s) joined with \\n"
        repairs.append(Repair(source, "merged_turns", detail))
    return messages, repairs


def _which(indices: list[int]) -> str:
    return ("message " if len(indices) == 1 else "messages ") + ", ".join(map(str, indices))


def normalise_text(text: str) -> str:
    """Text for near-duplicate matching: NFKC, case-folded, punctuation removed, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(c for c in text if not unicodedata.category(c).startswith("P"))
    return _SPACES.sub(" ", text).strip()


def exact_key(messages: list[Message]) -> str:
    """Canonical JSON of a conversation, for exact-duplicate matching."""
    return json.dumps(messages, ensure_ascii=False, sort_keys=True, default=str)


def prompt_reply_keys(messages: list[Message]) -> tuple[str, str]:
    """Normalised (prompt, reply) keys: the reply is the last assistant turn, the prompt all before it."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=len(messages))
    prompt = [[m["role"], normalise_text(m.get("content", "")), m.get("metadata") or "",
               json.dumps(m.get("tools") or [], ensure_ascii=False, sort_keys=True)] for m in messages[:last]]
    reply = messages[last] if last < len(messages) else {}
    reply_key = [reply.get("metadata") or "", normalise_text(reply.get("content", ""))]
    return json.dumps(prompt, ensure_ascii=False), json.dumps(reply_key, ensure_ascii=False)
