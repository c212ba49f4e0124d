"""Identity consistency: does the tuned model call itself by its new name, and does the old one leak?"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from glmtune.errors import DataError
from glmtune.identity_names import LEAK_MAKERS, LEAK_NAMES

BUNDLED_PROBES = "identity_probes.jsonl"
_GAP = "\x00"  # stands in for removed new-name text, so the pieces around it cannot join into an old name


def _fold(text: str) -> str:
    """Case-fold for matching (affects Latin and other cased scripts, leaves CJK alone)."""
    return text.casefold()


def name_start(name: str) -> str | None:
    """The opening of ``name`` that a reply which starts the name but misspells it still holds: its first half
    (at least 3 characters); None for names too short to tell a start from a common word."""
    text = name.strip()
    if len(text) < 5:  # "Nov" of Nova also starts "novel"
        return None
    return text[:max(3, (len(text) + 1) // 2)]


def identity_scores(
    answers: list[str],
    name: str,
    author: str | None = None,
    old_names: list[str] | tuple[str, ...] = LEAK_NAMES,
    old_authors: list[str] | tuple[str, ...] = LEAK_MAKERS,
) -> dict[str, Any]:
    """Share of answers that adopt ``name`` and that leak an old name or author, plus the offending answers.

    Matching is by substring, case-insensitive (``str.casefold``). ``adoption`` counts answers containing
    ``name``. ``leakage`` counts answers containing any of ``old_names`` or ``old_authors`` once every
    occurrence of the new ``name`` (and of ``author``, when given) has been removed, so a new name such as
    "GLM-Helper" does not count as leaking "GLM". ``author_adoption`` (only when ``author`` is given) counts
    answers containing ``author``. ``misspelled`` counts answers that miss ``name`` but hold its opening
    (``name_start``: "I am Drasdio" for Draskou). ``offending`` lists ``{"index", "answer", "why"}`` for every answer that
    leaks or does not adopt. Shares are 0.0 when there are no answers.
    """
    if not name.strip():
        raise ValueError("the new name must not be empty")
    new_terms = [_fold(name)] + ([_fold(author)] if author and author.strip() else [])
    new_terms.sort(key=len, reverse=True)  # longer first, so one that contains the other is removed whole
    old_terms = [(term, _fold(term)) for term in [*old_names, *old_authors] if term.strip()]

    adopted = leaked = author_adopted = misspelled = 0
    start = name_start(name)
    offending: list[dict[str, Any]] = []
    for index, answer in enumerate(answers):
        folded = _fold(answer)
        adopts = _fold(name) in folded
        if author and author.strip() and _fold(author) in folded:
            author_adopted += 1
        rest = folded
        for term in new_terms:
            rest = rest.replace(term, _GAP)
        leaks = [term for term, folded_term in old_terms if folded_term in rest]
        starts = not adopts and start is not None and _fold(start) in folded
        adopted += adopts
        leaked += bool(leaks)
        misspelled += starts
        if leaks or not adopts:
            why = []
            if starts:
                why.append(f"starts {start!r} but misspells {name!r}")
            elif not adopts:
                why.append(f"does not mention {name!r}")
            if leaks:
                why.append("mentions " + ", ".join(repr(t) for t in leaks))
            offending.append({"index": index, "answer": answer, "why": "; ".join(why)})

    n = len(answers)
    result: dict[str, Any] = {
        "adoption": adopted / n if n else 0.0,
        "leakage": leaked / n if n else 0.0,
        "misspelled": misspelled / n if n else 0.0,
        "n": n,
        "offending": offending,
    }
    if author and author.strip():
        result["author_adoption"] = author_adopted / n if n else 0.0
    return result


def load_probes(path: str | Path | None = None) -> list[list[dict[str, Any]]]:
    """Load identity probe conversations from a ``{"messages": [...]}`` JSONL file, or the bundled set."""
    if path is None:
        resource = resources.files("glmtune") / "resources" / BUNDLED_PROBES
        source = f"glmtune/resources/{BUNDLED_PROBES}"
        try:
            text = resource.read_text(encoding="utf-8")
        except FileNotFoundError as exc:  # a broken install, not a user mistake, but say so clearly
            raise DataError(f"bundled probe file missing: {source}") from exc
    else:
        source = str(path)
        file = Path(path)
        if not file.is_file():
            raise DataError(f"probe file not found: {file}")
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{source}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
    probes = [
        _parse_probe(line, f"{source}:{lineno}")
        for lineno, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]
    if not probes:
        raise DataError(f"{source}: no probes (the file is empty)")
    return probes


def _parse_probe(line: str, where: str) -> list[dict[str, Any]]:
    """Parse one JSONL line into a message list ending with a user turn, or raise DataError naming ``where``."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg})") from exc
    if not isinstance(record, dict) or not isinstance(record.get("messages"), list):
        raise DataError(f'{where}: expected an object with a "messages" list')
    messages = record["messages"]
    if not messages:
        raise DataError(f'{where}: "messages" is empty')
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise DataError(f"{where}: message {i} is not an object")
        if not isinstance(message.get("role"), str) or not isinstance(message.get("content"), str):
            raise DataError(f'{where}: message {i} needs string "role" and "content"')
    if messages[-1]["role"] != "user":
        raise DataError(f"{where}: the last message must be from the user (got {messages[-1]['role']!r})")
    return messages
