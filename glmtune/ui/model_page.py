"""Model page: pick a local model folder (or make a tiny one, as ``glmtune make-tiny`` does) and describe it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from glmtune.errors import UserError
from glmtune.ui.workspace import Workspace, command


@dataclass
class ModelInfo:
    """What the Model page shows about a model folder."""

    path: str
    layout: str
    stop_tokens: list[str]
    params: int
    architecture: str
    details: str  # describe_layout's paragraph: tools and thinking

    def markdown(self) -> str:
        """The model facts as a Markdown list."""
        stops = ", ".join(f"`{t}`" for t in self.stop_tokens)
        lines = [f"- **layout (family):** `{self.layout}`", f"- **stop tokens:** {stops}",
                 f"- **parameters:** {self.params:,}", f"- **architecture:** {self.architecture}"]
        lines += [f"- {line}" for line in self.details.splitlines()[1:]]
        return "\n".join(lines)


def inspect_model(path: str | None) -> ModelInfo:
    """Layout, stop tokens and parameter count of ``path`` (``UserError`` when it is not a model folder)."""
    from glmtune.layout import get_layout
    from glmtune.layout.show import describe_layout
    from glmtune.models import check_model_path, load_tokenizer
    from glmtune.train.plan_inputs import model_param_count

    name = (path or "").strip()
    if not name:
        raise UserError("choose a model folder (or make a tiny model)")
    check_model_path(name)
    tokenizer = load_tokenizer(name)
    layout = get_layout(tokenizer)
    try:
        params = model_param_count(name)
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{name}: cannot read the model's config.json ({exc})") from None
    return ModelInfo(path=name, layout=layout.name, stop_tokens=tokenizer.convert_ids_to_tokens(layout.stop_ids),
                     params=params, architecture=architecture(Path(name)),
                     details=describe_layout(layout, tokenizer))


def architecture(folder: Path) -> str:
    """The ``architectures`` named in a local ``config.json`` (``unknown`` otherwise)."""
    try:
        names = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        return "unknown"
    return ", ".join(str(n) for n in names) or "unknown"


def tiny_model_path(ws: Workspace, family: str, seed: int = 0) -> Path:
    """Where the Model page writes the tiny model of ``family``."""
    return ws.models / (f"tiny-{family}" if seed == 0 else f"tiny-{family}-seed{seed}")


def make_tiny_model(ws: Workspace, family: str = "glm4", seed: int = 0) -> tuple[Path, bool, str]:
    """Make (or reuse) the tiny ``family`` model with ``make_tiny``; returns (folder, made now, command)."""
    from glmtune.data.outputs import check_output
    from glmtune.tiny.families import FAMILY_NAMES
    from glmtune.tiny.model import make_tiny
    from glmtune.world import tokenizer_corpus

    if family not in FAMILY_NAMES:
        raise UserError(f"unknown model family {family!r}; choose one of {', '.join(FAMILY_NAMES)}")
    out = tiny_model_path(ws, family, seed)
    cmd = command("make-tiny", "--out", out, *(["--family", family] if family != "glm4" else []),
                  *(["--seed", str(seed)] if seed else []))
    if (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file():
        return out, False, cmd
    check_output(out, "--out", "dir", overwrite=False)
    make_tiny(out, seed=seed, family=family, corpus=tokenizer_corpus(seed))
    return out, True, cmd
