"""Issue 25's table: adoption, leakage and persona adherence per depth, with the name's token count and the misses."""

from __future__ import annotations

from typing import Any

# The goal at every depth; retention, stop and loop over all of a run's replies.
DEPTH_GOAL = {"adoption": (">=", 0.9), "leakage": ("<=", 0.05)}
RUN_GOAL = {"skill_retention": (">=", 0.95), "stop_rate": (">=", 1.0), "loop_rate": ("<=", 0.0)}
PERSONA_GOAL = {"habit": (">=", 0.9), "traits": (">=", 0.9)}
_LABELS = {"skill_retention": "retention", "stop_rate": "stop", "loop_rate": "loop"}


def _ok(value: float | None, op: str, target: float) -> bool:
    if value is None:
        return False
    return value >= target - 1e-9 if op == ">=" else value <= target + 1e-9


def run_misses(run: dict[str, Any]) -> list[str]:
    """What one run misses of the goal: ``adoption@8 0.71``, ``retention 0.90``, ``habit@3 0.40``, ..."""
    misses = []
    for depth, values in sorted(run.get("by_depth", {}).items(), key=lambda kv: int(kv[0])):
        for metric, (op, target) in DEPTH_GOAL.items():
            if not _ok(values.get(metric), op, target):
                misses.append(f"{metric}@{depth} {values.get(metric, float('nan')):.2f}")
    for metric, (op, target) in RUN_GOAL.items():
        if not _ok(run.get(metric), op, target):
            value = run.get(metric)
            misses.append(f"{_LABELS[metric]} {'n/a' if value is None else f'{value:.3f}'}")
    for depth, values in sorted(run.get("persona", {}).items(), key=lambda kv: _depth_key(kv[0])):
        if _depth_key(depth) < 0:  # after_skill / after_tool: reported in metrics.json, not a depth
            continue
        for metric, (op, target) in PERSONA_GOAL.items():
            if metric in values and not _ok(values[metric], op, target):
                misses.append(f"{metric}@{_depth_key(depth)} {values[metric]:.2f}")
    return misses


def _depth_key(tag: str) -> int:
    return 0 if tag == "alone" else int(tag[5:]) if tag.startswith("depth") and tag[5:].isdigit() else -1


def _per_depth(values: dict[str, dict[str, float]], metric: str, depths: list[str]) -> str:
    return " / ".join(f"{values[d][metric]:.2f}" if d in values and metric in values[d] else "-" for d in depths)


def render_depth_table(runs: list[dict[str, Any]], depths: tuple[int, ...], header: str) -> str:
    """Markdown: one row per run, per-depth adoption / leakage (and persona habit / traits), and its misses."""
    keys = [str(d) for d in depths]
    tags = ["alone" if d == 0 else f"depth{d}" for d in depths]
    dl = "/".join(keys)
    lines = [header, "", f"| variant | seed | identity (form, name tokens) | contestant | adoption @{dl} | leakage @{dl} | "
             f"habit @{dl} | traits @{dl} | retention | stop | loop | steps | misses of the goal |",
             "|---" * 12 + "|"]
    for run in runs:
        persona = run.get("persona", {})
        by_depth = run.get("by_depth", {})
        habit = _per_depth(persona, "habit", tags) if persona else "-"
        traits = _per_depth(persona, "traits", tags) if persona else "-"
        retention = run.get("skill_retention")
        misses = run_misses(run)
        lines.append(
            f"| {run['variant']} | {run.get('seed', '?')} | {run.get('name', '?')} / {run.get('author', '?')} ({run.get('form', '?')}, "
            f"{run.get('name_tokens', '?')}) | {run['contestant']} | {_per_depth(by_depth, 'adoption', keys)} | "
            f"{_per_depth(by_depth, 'leakage', keys)} | {habit} | {traits} | "
            f"{'n/a' if retention is None else f'{retention:.2f}'} | {run['stop_rate']:.2f} | "
            f"{run['loop_rate']:.3f} | {run.get('steps', '?')} | {'; '.join(misses) or 'none'} |")
    lines.append("")
    return "\n".join(lines)


def by_token_count(runs: list[dict[str, Any]], depths: tuple[int, ...]) -> str:
    """Markdown: mean adoption per depth for each (contestant, name token count)."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["contestant"], int(run.get("name_tokens") or 0)), []).append(run)
    keys = [str(d) for d in depths]
    lines = [f"| contestant | name tokens | runs | adoption @{'/'.join(keys)} |", "|---|---|---|---|"]
    for (contestant, tokens), rows in sorted(groups.items()):
        cells = []
        for key in keys:
            vals = [r["by_depth"][key]["adoption"] for r in rows if key in r.get("by_depth", {})]
            cells.append(f"{sum(vals) / len(vals):.2f}" if vals else "-")
        lines.append(f"| {contestant} | {tokens} | {len(rows)} | {' / '.join(cells)} |")
    lines.append("")
    return "\n".join(lines)


def _mean(values: list[float]) -> str:
    return f"{sum(values) / len(values):.2f}" if values else "-"


def _mean_per_depth(rows: list[dict[str, Any]], metric: str, keys: list[str]) -> str:
    return " / ".join(_mean([r["by_depth"][k][metric] for r in rows if k in r.get("by_depth", {})]) for k in keys)


def by_variant(runs: list[dict[str, Any]], depths: tuple[int, ...]) -> str:
    """Markdown: per variant and contestant, means over its seeds, and how many runs meet the whole goal."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["variant"], run["contestant"]), []).append(run)
    keys = [str(d) for d in depths]
    dl = "/".join(keys)
    lines = [f"| variant | contestant | seeds | adoption @{dl} | leakage @{dl} | retention | stop | loop | "
             "runs meeting the goal |", "|---" * 9 + "|"]
    for (variant, contestant), rows in groups.items():
        retention = [r["skill_retention"] for r in rows if r.get("skill_retention") is not None]
        met = sum(not run_misses(r) for r in rows)
        lines.append(f"| {variant} | {contestant} | {len(rows)} | {_mean_per_depth(rows, 'adoption', keys)} | "
                     f"{_mean_per_depth(rows, 'leakage', keys)} | "
                     f"{_mean(retention)} | {_mean([r['stop_rate'] for r in rows])} | "
                     f"{sum(r['loop_rate'] for r in rows) / len(rows):.3f} | {met} of {len(rows)} |")
    lines.append("")
    return "\n".join(lines)
