"""``python -m bench.quality.collect DIR...``: the per-depth table of every finished run under the given --out folders."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.quality.depth_report import by_token_count, by_variant, render_depth_table

ORDER = {"n30": 0, "n30@fixed": 1, "n30depth": 2, "noisy": 3, "tool": 4, "persona": 5, "persona@fixed": 6,
         "personadepth": 7}


def collect(roots: list[str]) -> list[dict[str, Any]]:
    """Every run's metrics.json under ``roots``; a run with --glmtune-set carries it in its contestant label."""
    runs = []
    for root in roots:
        for path in sorted(Path(root).glob("runs/*/seed*/*/*/metrics.json")):
            run = json.loads(path.read_text(encoding="utf-8"))
            if run.get("glmtune_set"):
                run["contestant"] += " (" + ", ".join(run["glmtune_set"]) + ")"
            runs.append(run)
    runs.sort(key=lambda r: (ORDER.get(r["variant"], 9), r["contestant"], r["seed"]))
    return runs


def main(argv: list[str] | None = None) -> int:
    """Print the means per variant and contestant, the per-depth table and the adoption by name token count
    (n30 rows) as markdown."""
    runs = collect(argv if argv is not None else sys.argv[1:])
    depths = (0, 3, 8)
    print(by_variant(runs, depths))
    print(render_depth_table(runs, depths, "").strip() + "\n")
    print(by_token_count([r for r in runs if r["variant"] in ("n30", "n30@fixed")], depths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
