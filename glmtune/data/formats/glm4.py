"""GLM-4 records (``{"messages": [...]}``, already in the target form) for any container, not only JSONL."""

from __future__ import annotations

from typing import Any

from glmtune.data.formats.common import Converted, RecordError, record_extra

NAME = "glm4"


def convert(record: Any) -> Converted:
    """Pass a GLM-4 record through; ``check_messages`` and ``normalise_message`` do the rest, as in the JSONL reader."""
    if not isinstance(record, dict) or "messages" not in record:
        raise RecordError("no_messages", "expected an object with a 'messages' list")
    extra = record_extra(record, ("messages",))
    return record["messages"], extra
