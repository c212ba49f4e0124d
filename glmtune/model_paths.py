"""Check a model, adapter or tokenizer path before anything heavy is imported or written."""

from __future__ import annotations

from pathlib import Path

from glmtune.errors import UserError


class ModelLoadError(UserError):
    """The model or adapter cannot be loaded."""


def _looks_local(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).exists() or name.count("/") > 1


def check_model_path(name: str, what: str = "model") -> None:
    """Fail early when a local-looking model path does not exist or lacks its config."""
    if _looks_local(name):
        path = Path(name).expanduser()
        if not path.is_dir():
            raise ModelLoadError(f"{'adapter' if what == 'adapter' else 'model'} folder not found: {name}")
        if what == "model" and not (path / "config.json").is_file():
            raise ModelLoadError(f"{what} folder {name} has no config.json")
        if what == "adapter" and not (path / "adapter_config.json").is_file():
            raise ModelLoadError(f"{what} folder {name} has no adapter_config.json")
        if what == "tokenizer" and not (path / "tokenizer_config.json").is_file():
            raise ModelLoadError(f"{what} folder {name} has no tokenizer_config.json")
