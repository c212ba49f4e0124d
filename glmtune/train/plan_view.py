"""Print a capacity plan as a table: key, value, where it came from, and why."""

from __future__ import annotations

import io
import logging

from rich.console import Console
from rich.table import Table

from glmtune.train.plan import Plan

log = logging.getLogger(__name__)


def plan_table(plan: Plan) -> Table:
    """A rich table of the plan."""
    stats = plan.stats
    title = f"plan: {plan.params:,}-parameter model"
    if plan.active_params:
        title = f"plan: {plan.params:,}-parameter MoE model ({plan.active_params:,} active per token)"
    if stats:
        title += f", {stats.samples} samples, {stats.trained_tokens:,} supervised tokens"
    table = Table(title=title, show_lines=False)
    table.add_column("key")
    table.add_column("value")
    table.add_column("from")
    table.add_column("why", overflow="fold")
    for item in plan.items:
        table.add_row(item.key, str(item.value), item.source, item.reason)
    return table


def print_plan(plan: Plan) -> None:
    """Log the plan table as one plain-text message (so it also lands in log files)."""
    buf = io.StringIO()
    Console(file=buf, width=140, highlight=False, color_system=None).print(plan_table(plan))
    log.info(buf.getvalue().rstrip())
