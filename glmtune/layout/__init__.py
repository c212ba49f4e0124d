"""Token layouts: how a conversation becomes ``input_ids`` and ``labels``."""

from glmtune.layout.base import ChatLayout, EncodedSample, LayoutError
from glmtune.layout.select import get_layout

__all__ = ["ChatLayout", "EncodedSample", "LayoutError", "get_layout"]
