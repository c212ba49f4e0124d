"""Expose this interpreter's torch, and only torch and what it needs, to another venv through one folder.

``python bench/peers/outer_torch.py DEST`` fills DEST with symbolic links to the installed files of torch and of
every distribution torch requires (recursively: sympy, networkx, the nvidia-* wheels of a CUDA build, ...),
each with its ``.dist-info``, so that pip in the other venv sees them as installed. bench/peers/setup.sh points
a ``.pth`` file at DEST. Exposing the whole site-packages instead would leak everything else installed beside
glmtune (for example ``kernels``, which older transformers releases import and fail on).
"""

from __future__ import annotations

import re
import shutil
import sys
from importlib import metadata
from pathlib import Path


def requirement_name(spec: str) -> str | None:
    """The distribution named by a ``Requires-Dist`` line, or None when its marker excludes this interpreter."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # no packaging: keep every requirement that is not an extra's
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
        return match.group(1) if match and "extra ==" not in spec else None
    req = Requirement(spec)
    return req.name if req.marker is None or req.marker.evaluate({"extra": ""}) else None


def closure(root: str) -> list[metadata.Distribution]:
    """``root`` and every installed distribution it requires, recursively (missing optional ones skipped)."""
    seen: dict[str, metadata.Distribution] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[key] = dist
        todo.extend(n for n in map(requirement_name, dist.requires or []) if n)
    return list(seen.values())


def top_level_entries(dist: metadata.Distribution) -> set[Path]:
    """The top-level files and folders a distribution installed, its ``.dist-info`` folder among them."""
    base = Path(str(dist.locate_file("")))
    names = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
    return {base / n for n in names if (base / n).exists() and not n.endswith(".pth") and n != "__pycache__"}


def main(argv: list[str]) -> int:
    """Link torch's closure into the folder named by the one argument; print what was linked."""
    if len(argv) != 1:
        print("usage: python bench/peers/outer_torch.py DEST", file=sys.stderr)
        return 2
    dest = Path(argv[0])
    dists = closure("torch")
    if not dists:
        print(f"error: {sys.executable} has no torch", file=sys.stderr)
        return 1
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for dist in dists:
        for entry in top_level_entries(dist):
            link = dest / entry.name
            if not link.exists():
                link.symlink_to(entry)
    print(" ".join(sorted(f"{d.metadata['Name']}=={d.version}" for d in dists)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
