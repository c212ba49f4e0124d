"""Record formats (glm4, openai, sharegpt, alpaca) and file containers, all normalised to GLM-4 messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from glmtune.data.formats import alpaca, glm4, openai, sharegpt
from glmtune.data.formats.common import Converted, RecordError

# Priority order: when a record fits several formats, the first one wins.
CONVERTERS: dict[str, Callable[[Any], Converted]] = {
    glm4.NAME: glm4.convert,
    openai.NAME: openai.convert,
    sharegpt.NAME: sharegpt.convert,
    alpaca.NAME: alpaca.convert,
}
FORMATS = tuple(CONVERTERS)

__all__ = ["CONVERTERS", "FORMATS", "Converted", "RecordError"]
