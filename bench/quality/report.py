"""Aggregate the runs over seeds, check the goal, and render the markdown table."""

from __future__ import annotations

import math
import statistics
from typing import Any

# glmtune's goal on the 30-sample, noisy and tool variants (issue 6), averaged over seeds.
GOAL = {"adoption": (">=", 0.9), "leakage": ("<=", 0.05), "skill_retention": (">=", 0.95),
        "stop_rate": (">=", 1.0), "loop_rate": ("<=", 0.0), "max_spike": ("<=", 3.0)}
HIGHER_IS_BETTER = {"adoption": True, "leakage": False, "skill_retention": True, "stop_rate": True,
                    "loop_rate": False, "max_spike": False}
COLUMNS = ("adoption", "leakage", "skill_retention", "general_rougeL_vs_base", "stop_rate", "loop_rate",
           "max_spike", "steps", "wall_s")


def mean_sd(values: list[Any]) -> dict[str, Any]:
    """Mean and sample sd of the finite numbers among ``values`` (None when there are none)."""
    good = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not good:
        return {"mean": None, "sd": None, "n": 0}
    return {"mean": statistics.fmean(good), "sd": statistics.stdev(good) if len(good) > 1 else 0.0, "n": len(good)}


def aggregate(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{variant: {contestant: {metric: {mean, sd, n}}}}`` over the seeds of each pair."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["variant"], run["contestant"]), []).append(run)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (variant, contestant), rows in groups.items():
        out.setdefault(variant, {})[contestant] = {k: mean_sd([r.get(k) for r in rows]) for k in COLUMNS}
    return out


def _meets(value: float | None, op: str, target: float) -> bool:
    if value is None:
        return False
    return value >= target - 1e-9 if op == ">=" else value <= target + 1e-9


def goal_check(agg: dict[str, dict[str, dict[str, Any]]], variants: tuple[str, ...]) -> list[dict[str, Any]]:
    """One row per (variant, metric): glmtune's mean, the goal, whether it is met, and how peers compare."""
    rows = []
    for variant in variants:
        table = agg.get(variant, {})
        mine = table.get("glmtune")
        if not mine:
            continue
        for metric, (op, target) in GOAL.items():
            value = mine[metric]["mean"]
            better = HIGHER_IS_BETTER[metric]
            beaten_by = [c for c, m in table.items() if c != "glmtune" and m[metric]["mean"] is not None
                         and value is not None
                         and (m[metric]["mean"] > value + 1e-9 if better else m[metric]["mean"] < value - 1e-9)]
            rows.append({"variant": variant, "metric": metric, "glmtune": value, "goal": f"{op} {target:g}",
                         "met": _meets(value, op, target), "beaten_by": beaten_by})
    return rows


def _cell(stat: dict[str, Any], digits: int = 2) -> str:
    if stat["mean"] is None:
        return "n/a"
    if stat["n"] > 1 and stat["sd"]:
        return f"{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f}"
    return f"{stat['mean']:.{digits}f}"


def render(agg: dict[str, dict[str, dict[str, Any]]], goals: list[dict[str, Any]], header: str) -> str:
    """Markdown: one table per variant, then the goal check."""
    lines = [header, ""]
    names = {"skill_retention": "retention", "general_rougeL_vs_base": "ROUGE-L vs base", "max_spike": "max spike",
             "stop_rate": "stop", "loop_rate": "loop", "wall_s": "wall s"}
    for variant, table in agg.items():
        lines += [f"**{variant}**", "", "| contestant | " + " | ".join(names.get(c, c) for c in COLUMNS) + " |",
                  "|---" * (len(COLUMNS) + 1) + "|"]
        for contestant, stats in table.items():
            cells = [_cell(stats[c], 0 if c in ("steps", "wall_s", "general_rougeL_vs_base") else 2) for c in COLUMNS]
            lines.append(f"| {contestant} | " + " | ".join(cells) + " |")
        lines.append("")
    if goals:
        lines += ["Goal check for glmtune (mean over seeds):", "", "| variant | metric | glmtune | goal | met | "
                  "a peer does better |", "|---|---|---|---|---|---|"]
        for g in goals:
            value = "n/a" if g["glmtune"] is None else f"{g['glmtune']:.3f}"
            lines.append(f"| {g['variant']} | {g['metric']} | {value} | {g['goal']} | {'yes' if g['met'] else 'NO'} | "
                         f"{', '.join(g['beaten_by']) or '-'} |")
        lines.append("")
    return "\n".join(lines)
