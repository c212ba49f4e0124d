"""Render the config reference (every key, type, default, description) as Markdown for the README."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.fields import PydanticUndefined

from glmtune.config.schema import GlmtuneConfig


def _default(field: Any) -> str:
    if field.default is not PydanticUndefined:
        return "required" if field.default is ... else f"`{field.default!r}`".replace("'", "")
    if field.default_factory is not None:
        value = field.default_factory()
        return "" if isinstance(value, BaseModel) else f"`{value!r}`".replace("'", "")
    return "required"


def reference_rows(model: type[BaseModel] = GlmtuneConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, description) for every leaf option."""
    rows: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += reference_rows(annotation, key + ".")
        else:
            rows.append((key, _default(field), field.description or ""))
    return rows


def markdown_reference() -> str:
    """The README's config reference table."""
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{key}` | {default} | {desc.replace('|', '/')} |" for key, default, desc in reference_rows()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_reference())
