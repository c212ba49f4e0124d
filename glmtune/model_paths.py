"""Check a model, adapter or tokenizer path before anything heavy is imported or written.

A name that looks like a local path (``/``, ``./``, ``../``, ``~``, an existing parent folder, or more than one
slash) must exist: it is never sent to the hub, where a typo costs a minute of retries. A hub id is only tried
when the hub can be reached or the model is already in the local cache.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

from glmtune.errors import UserError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
REACH_TIMEOUT_S = 3.0
_MARKER = {"model": "config.json", "adapter": "adapter_config.json", "tokenizer": "tokenizer_config.json"}


class ModelLoadError(UserError):
    """The model or adapter cannot be loaded."""


def looks_local(name: str) -> bool:
    """True when ``name`` is meant as a local path rather than a hub id."""
    if name.startswith(("/", "./", "../", "~", ".")) or name in (".", "..") or "\\" in name:
        return True
    if name.count("/") > 1 or Path(name).exists():
        return True
    parent = Path(name).parent
    return str(parent) not in ("", ".") and parent.exists()


def _offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _cached(repo_id: str, filename: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        return False
    try:
        found = try_to_load_from_cache(repo_id, filename)
    except Exception:  # noqa: BLE001 - a malformed id or cache: treat as not cached
        return False
    return isinstance(found, str)


def hub_reachable(timeout: float = REACH_TIMEOUT_S) -> bool:
    """True when a TCP connection to the hub endpoint opens within ``timeout`` seconds."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def check_hub_id(name: str, what: str = "model") -> None:
    """Fail fast when ``name`` cannot be a hub id, or cannot be fetched (offline, or no network) nor is cached."""
    label = "adapter" if what == "adapter" else what
    if not HUB_ID.match(name):
        raise ModelLoadError(f"{label} {name!r} is neither an existing folder nor a hub id (owner/name)")
    if _cached(name, _MARKER.get(what, "config.json")):
        return
    if _offline():
        raise ModelLoadError(f"{label} {name!r} is not a local folder, and HF_HUB_OFFLINE is set while it is not in "
                             "the local hub cache; pass the folder it was downloaded to")
    if not hub_reachable():
        raise ModelLoadError(f"{label} {name!r} is not a local folder, and the hub cannot be reached (no network?) "
                             "while it is not in the local hub cache; pass a local folder")


def check_model_path(name: str, what: str = "model") -> None:
    """Fail early when a local-looking path does not exist or lacks its config, or a hub id cannot be fetched."""
    label = "adapter" if what == "adapter" else what
    if not looks_local(name):
        check_hub_id(name, what)
        return
    path = Path(name).expanduser()
    if not path.exists():
        label = "adapter" if what == "adapter" else "model"
        raise ModelLoadError(f"{label} folder not found: {name} (a local path is never looked up on the hub)")
    if not path.is_dir():
        raise ModelLoadError(f"{label} path {name} is a file; expected a folder")
    marker = _MARKER.get(what, "config.json")
    if not (path / marker).is_file():
        raise ModelLoadError(f"{label} folder {name} has no {marker}")
