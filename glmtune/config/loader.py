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


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})
_KINDS = {"int": "a whole number", "float": "a number", "str": "text", "bool": "true or false", "list": "a list",
          "dict": "a mapping", "DataSource": "a {path, format, weight} entry"}
_BOUNDS = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than": ("<", "lt"),
           "less_than_equal": ("<=", "le")}


def _is_tag(part: object) -> bool:
    """True for the union-member labels pydantic puts in an error's location (``constrained-int``, ``str``...)."""
    return isinstance(part, str) and (not part.replace("_", "a").isalnum() or not part.islower()
                                      or part in _TYPE_TAGS)


def _trailing_tags(loc: list[Any]) -> list[str]:
    """The union labels after the last real key: they say which type the failing value was tried as."""
    tags: list[str] = []
    for part in reversed(loc):
        if not _is_tag(part):
            break
        tags.insert(0, part)
    return tags


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _tag_kind(tags: list[str]) -> str | None:
    for tag in reversed(tags):
        base = tag.removeprefix("constrained-").split("[", 1)[0]
        if base in _KINDS:
            return _KINDS[base]
    return None


def _allowed(err: dict[str, Any], tags: list[str]) -> str:
    """What the value may be, in words, for one pydantic error."""
    kind, ctx, etype = _tag_kind(tags), err.get("ctx") or {}, err["type"]
    if etype in _BOUNDS:
        op, name = _BOUNDS[etype]
        return f"{kind or 'a number'} {op} {_number(ctx.get(name))}"
    if etype == "literal_error":
        expected = str(ctx.get("expected", ""))
        return expected if " or " not in expected else f"one of {expected}"
    for prefix, words in (("int", "a whole number"), ("float", "a number"), ("bool", "true or false"),
                          ("string", "text"), ("list", "a list"), ("dict", "a mapping"), ("model", "a mapping")):
        if etype.startswith(prefix):
            return words
    return str(err["msg"]).removeprefix("Value error, ")


def _key(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per config key: ``source: key: must be ... (got ...)``, with no pydantic internals."""
    found: dict[str, tuple[list[str], Any]] = {}
    for err in exc.errors():
        loc = [p for p in err["loc"] if not _is_tag(p)]
        key = _key(loc)
        if err["type"] == "extra_forbidden":
            phrase = "unknown key"
        elif err["type"] == "missing":
            phrase = "required key is missing"
        elif err["type"] == "value_error":
            phrase = str(err["msg"]).removeprefix("Value error, ")
        else:
            phrase = "must be " + _allowed(err, _trailing_tags(list(err["loc"])))
        phrases, value = found.setdefault(key, ([], err.get("input")))
        if phrase not in phrases:
            phrases.append(phrase)
    # a union reports every member; the deepest key is the one the user got wrong (data.train_file[0].weight)
    keys = [k for k in found if not any(o != k and o.startswith(k) and o[len(k)] in ".[" for o in found)]
    lines = []
    for key in keys:
        phrases, value = found[key]
        musts = [p.removeprefix("must be ") for p in phrases if p.startswith("must be ")]
        others = [p for p in phrases if not p.startswith("must be ")]
        text = "; ".join(others + (["must be " + " or ".join(musts)] if musts else []))
        got = "" if phrases == ["required key is missing"] or phrases == ["unknown key"] else f" (got {value!r})"
        lines.append(f"{source}: {key}: {text}{got}")
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
