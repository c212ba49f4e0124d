"""One raw record read from a data file, with the place it came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Item:
    """One raw record: ``record`` when it parsed, else ``error`` = (code, reason); ``raw`` is what was read."""

    source: str
    record: Any = None
    raw: Any = None
    error: tuple[str, str] | None = None
