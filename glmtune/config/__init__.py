"""Run configuration: pydantic models (defaults live here) and the YAML + override loader."""

from glmtune.config.loader import load_config
from glmtune.config.schema import GlmtuneConfig

__all__ = ["GlmtuneConfig", "load_config"]
