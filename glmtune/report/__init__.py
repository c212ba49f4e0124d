"""Run reports: one self-contained HTML page with plan, training curves, stability events and eval results."""

from glmtune.report.html import examples_from_predictions, render_report, write_report
from glmtune.report.plots import curve_rows, events, plot_curves, read_log, series

__all__ = [
    "curve_rows",
    "events",
    "examples_from_predictions",
    "plot_curves",
    "read_log",
    "render_report",
    "series",
    "write_report",
]
