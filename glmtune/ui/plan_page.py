"""Plan page: a config from the page's fields, written as YAML and planned as ``glmtune plan CONFIG`` plans it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from glmtune.errors import UserError
from glmtune.ui.workspace import Workspace, command, split_paths

# The main keys the page edits: (dotted config key, label, default text). Blank or "auto" lets the planner decide.
SETTINGS: list[tuple[str, str, str]] = [
    ("training.learning_rate", "learning rate", "auto"),
    ("training.num_train_epochs", "epochs", "auto"),
    ("training.max_steps", "max steps (-1: use the epochs)", "-1"),
    ("peft.lora.r", "LoRA r", "auto"),
    ("data.max_length", "max length (tokens)", "1025"),
    ("training.per_device_train_batch_size", "batch size", "auto"),
    ("training.save_steps", "checkpoint every N steps", "500"),
    ("data.self_replay", "self-replay ratio", "auto"),
]
SETTING_KEYS = [key for key, _, _ in SETTINGS]
UI_OWNED = ("training.output_dir", "model.name_or_path", "data.train_file")
NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


@dataclass
class PlanView:
    """What the Plan page shows."""

    title: str
    rows: list[list[str]] = field(default_factory=list)  # key, value, from, why
    config_path: Path | None = None
    command: str = ""


def override(key: str, text: str) -> str:
    """``key=value`` with ``5e-3`` written as a number (plain YAML reads it as text)."""
    text = text.strip()
    return f"{key}={float(text)!r}" if NUMBER.match(text) else f"{key}={text}"


def draft_config(ws: Workspace, run_name: str, model: str | None, files: str | None, name: str | None,
                 author: str | None, settings: dict[str, str], extra: str | None = None) -> dict[str, Any]:
    """The config mapping of the page's fields, validated (``ConfigError`` names the key and the value)."""
    from glmtune.config.loader import apply_overrides, validate_config

    paths = split_paths(files)
    if not (model or "").strip():
        raise UserError("choose a model folder on the Model page first")
    if not paths:
        raise UserError("choose or upload a data file on the Data page first")
    identity = {k: v.strip() for k, v in (("name", name), ("author", author)) if v and v.strip()}
    if "author" in identity and "name" not in identity:
        raise UserError("an author needs a name (identity.author without identity.name)")
    data: dict[str, Any] = {
        "model": {"name_or_path": (model or "").strip()},
        "data": {"train_file": paths[0] if len(paths) == 1 else paths},
        "training": {"output_dir": str(ws.run_dir(run_name))},
    }
    if identity:
        data["identity"] = identity
    lines = [line.strip() for line in (extra or "").splitlines() if line.strip() and not line.strip().startswith("#")]
    for line in lines:
        if line.split("=", 1)[0].strip() in UI_OWNED:
            raise UserError(f"{line}: the page sets {line.split('=', 1)[0].strip()} (model, data and run name)")
    overrides = [override(key, text) for key, text in settings.items() if (text or "").strip()] + lines
    data = apply_overrides(data, overrides)
    validate_config(data, source="plan")
    return data


def write_draft(ws: Workspace, run_name: str, data: dict[str, Any]) -> Path:
    """Write the config as ``plans/<run>.yaml`` (what ``glmtune plan`` reads)."""
    path = ws.plans / f"{run_name}.yaml"
    path.write_text("# written by glmtune ui (Plan page)\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True),
                    encoding="utf-8")
    return path


def plan_config(path: Path) -> PlanView:
    """The resolved plan of a config file, with the reason for each value (``glmtune plan``'s functions)."""
    from glmtune.config import load_config
    from glmtune.train.plan_view import plan_table
    from glmtune.train.recipe import prepare_run

    config = load_config(path)
    plan = prepare_run(config, None).plan
    rows = [[item.key, str(item.value), item.source, item.reason] for item in plan.items]
    return PlanView(title=str(plan_table(plan).title), rows=rows, config_path=path, command=command("plan", path))


def plan_page(ws: Workspace, run_name: str, model: str | None, files: str | None, name: str | None,
              author: str | None, settings: dict[str, str], extra: str | None = None) -> PlanView:
    """Validate the page's fields, write the draft config and plan it."""
    data = draft_config(ws, run_name, model, files, name, author, settings, extra)
    return plan_config(write_draft(ws, run_name, data))
