"""Load a YAML config, apply ``a.b.c=value`` overrides, validate, and explain failures by key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from glmtune.config.schema import DataSource, GlmtuneConfig
from glmtune.errors import UserError


class ConfigError(UserError):
    """The config file or an override is wrong; the message names the key or the path."""


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``training.learning_rate=3e-4`` into its key path and a YAML-parsed value."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each dotted key in ``data`` (creating sections as needed)."""
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, failing with the file path on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem: ``source: key.path: message``."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = f"{err['msg']} (got {err.get('input')!r})"
        lines.append(f"{source}: {key}: {msg}")
    return "invalid config:\n  " + "\n  ".join(lines)


def validate_config(data: dict[str, Any], source: str = "config") -> GlmtuneConfig:
    """Validate a plain mapping into a ``GlmtuneConfig``."""
    try:
        return GlmtuneConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> GlmtuneConfig:
    """Read, override and validate a config; data files are checked to exist before any model loads."""
    data = apply_overrides(read_yaml(path), list(overrides or []))
    config = validate_config(data, source=str(path))
    base = Path(path).parent
    data = config.data
    data.train_file = [_check_source(s, base, f"{path}: data.train_file") for s in data_sources(data.train_file)]
    for key in ("eval_file", "replay_file"):
        value = getattr(data, key)
        if value is not None:
            setattr(data, key, _check_file(value, base, f"{path}: data.{key}"))
    if config.training.deepspeed:
        config.training.deepspeed = _check_file(config.training.deepspeed, base, f"{path}: training.deepspeed")
    return config


def data_sources(train_file: Any) -> list[DataSource]:
    """``data.train_file`` as a list of ``DataSource`` entries."""
    items = train_file if isinstance(train_file, list) else [train_file]
    return [DataSource(path=item) if isinstance(item, str) else item for item in items]


def _check_file(value: str, base: Path, where: str) -> str:
    resolved = resolve_path(value, base)
    if not resolved.is_file():
        raise ConfigError(f"{where}: file not found: {value}")
    return str(resolved)


def _check_source(source: DataSource, base: Path, where: str) -> DataSource:
    return source.model_copy(update={"path": _check_file(source.path, base, where)})


def resolve_path(value: str, base: Path) -> Path:
    """A path as given if it exists from the working directory, else relative to the config's folder."""
    p = Path(value)
    if p.is_absolute() or p.exists():
        return p
    return base / p
