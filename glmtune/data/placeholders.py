"""``{{name}}``-style placeholders (as in LLaMA-Factory's identity.json): find them and fill them in."""

from __future__ import annotations

import json
import re
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def fill_placeholders(messages: list[dict[str, Any]], values: dict[str, str]) -> list[dict[str, Any]]:
    """Return a copy of ``messages`` with ``{{key}}`` replaced by ``values[key]`` in every string field."""
    return [_fill(msg, values) for msg in messages]


def find_placeholders(messages: Any) -> set[str]:
    """Names of every ``{{key}}`` placeholder left anywhere in ``messages`` (content, metadata, tools)."""
    found: set[str] = set()
    for text in _strings(messages):
        found.update(PLACEHOLDER.findall(text))
    return found


def _fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return _fill_text(value, values)
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_fill(v, values) for v in value]
    return value


def _fill_text(text: str, values: dict[str, str]) -> str:
    if "{{" not in text:
        return text
    # Inside a JSON document (a function call's arguments, a tools string) the value must stay JSON-escaped.
    escape = _is_json_document(text)

    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            return match.group(0)
        value = str(values[key])
        return json.dumps(value, ensure_ascii=False)[1:-1] if escape else value

    return PLACEHOLDER.sub(replace, text)


def _is_json_document(text: str) -> bool:
    stripped = text.strip()
    if not stripped or stripped[0] not in "[{":
        return False
    try:
        json.loads(stripped)
    except (ValueError, RecursionError):
        return False
    return True


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return []
