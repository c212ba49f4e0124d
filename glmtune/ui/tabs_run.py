"""The Train page: start, stop and resume runs (each its own process), with live progress and curves."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr

from glmtune.errors import UserError
from glmtune.ui.progress import curve_figure, read_progress
from glmtune.ui.runs import (
    LOG,
    PID,
    Launcher,
    describe,
    failure_reason,
    list_runs,
    log_tail,
    run_state,
    shown_train_command,
)
from glmtune.ui.tabs_prepare import page_config
from glmtune.ui.widgets import command_box, file_link, safe, status_box
from glmtune.ui.workspace import Workspace, message

WATCHED = ("steps.jsonl", "log.jsonl", "plan.json", "summary.json", "report.html", LOG, PID, "ui-train.exit",
           "ui-train.stop")
REFRESH_S = 1.0


def train_tab(ui: SimpleNamespace) -> None:
    """Page 4: the runs of the workspace, their progress, curves, guard events and process output."""
    with gr.Tab("4 · Train", id="train"):
        gr.Markdown("**Start** trains the Plan page's settings as a new run, in a process of its own: it goes on "
                    "when the browser is closed or reloaded. **Stop** interrupts it (as Ctrl-C would); "
                    "**Resume** continues from its latest checkpoint. One run trains at a time.")
        with gr.Row():
            ui.run_select = gr.Dropdown(label="Run", choices=[], elem_id="run-select", scale=3)
            ui.train_start = gr.Button("Start a new run", variant="primary", elem_id="train-start", scale=1)
            ui.train_stop = gr.Button("Stop", variant="stop", elem_id="train-stop", scale=1)
            ui.train_resume = gr.Button("Resume", elem_id="train-resume", scale=1)
            ui.train_refresh = gr.Button("Refresh", elem_id="train-refresh", scale=1)
        ui.train_msg = status_box("train-msg")
        ui.train_progress = gr.Markdown(elem_id="train-progress")
        ui.train_curves = gr.Plot(label="Curves (guard events and an early stop marked)", elem_id="train-curves")
        ui.train_events = gr.Dataframe(headers=["step", "event", "what it did", "loss", "grad norm"],
                                       label="Stability guard and early stopping", interactive=False,
                                       elem_id="train-events")
        ui.train_links = gr.HTML(elem_id="train-links")
        ui.train_log = gr.Textbox(label="Process output (latest lines)", lines=12, max_lines=12, interactive=False,
                                  elem_id="train-log")
        ui.train_cmd = command_box("train-cmd")
        ui.train_key = gr.State(None)
        ui.train_timer = gr.Timer(REFRESH_S)


def md_escape(text: str) -> str:
    """Text shown literally inside Markdown."""
    return re.sub(r"([\\`*_{}\[\]<>()#+!|~])", r"\\\1", text)


def files_key(run_dir: Path) -> tuple[Any, ...]:
    """What changes when a run makes progress: its files' sizes and times, its checkpoints, its process."""
    stats = []
    for name in WATCHED:
        try:
            st = (run_dir / name).stat()
            stats.append((name, st.st_size, st.st_mtime_ns))
        except OSError:
            stats.append((name, None, None))
    state = run_state(run_dir)
    return (str(run_dir), state.status, len(state.checkpoints), tuple(stats))


def run_view(ws: Workspace, run_name: str | None, last: Any) -> tuple[Any, ...]:
    """Progress line, curves, events, links, log tail, command and the files' key (all skipped when unchanged)."""
    if not run_name:
        if last == "no run":
            return (gr.skip(),) * 7
        return "no run yet: plan one on the Plan page, then press Start", None, [], "", "", "", "no run"
    run_dir = ws.run_dir(run_name)
    key = files_key(run_dir)
    if key == last:
        return (gr.skip(),) * 7
    state = run_state(run_dir)
    progress = read_progress(run_dir, state.pid if state.status == "running" else None)
    line = progress.markdown(state.status)
    if state.checkpoints:
        line += f" · checkpoints: {', '.join(c.name for c in state.checkpoints)}"
    if state.status == "failed":
        code = "unknown" if state.exit_code is None else state.exit_code
        line = (f"**failed** (exit code {code}): {md_escape(failure_reason(run_dir))}  \n"
                f"{line.replace('**failed**', 'last logged')}")
    links = " · ".join(file_link(run_dir / name) for name in ("report.html", "plan.json", "summary.json", LOG)
                       if (run_dir / name).is_file())
    return (line, curve_figure(progress), progress.event_rows(), links, log_tail(run_dir),
            shown_train_command(run_dir), key)


def run_choices(ws: Workspace, prefer: str | None = None) -> Any:
    """The run dropdown: every run, the preferred (else the running, else the newest) one selected."""
    runs = list_runs(ws)
    names = [r.name for r in runs]
    busy = next((r.name for r in runs if r.status == "running"), None)
    value = prefer if prefer in names else busy or (names[0] if names else None)
    return gr.Dropdown(choices=names, value=value)


def wire_train(ui: SimpleNamespace, ws: Workspace, launcher: Launcher) -> None:
    """Start, stop, resume, and the refresh every second."""
    view_outputs = [ui.train_progress, ui.train_curves, ui.train_events, ui.train_links, ui.train_log,
                    ui.train_cmd, ui.train_key]

    def start(run_name: str, model: str, files: str, name: str, author: str, extra: str,
              *values: str) -> tuple[Any, ...]:
        data = page_config(ws, run_name, model, files, name, author, extra, values)
        state = launcher.start(run_name.strip(), data)
        return (message(f"started run {state.name} (pid {state.pid}): {describe(state)}"),
                run_choices(ws, state.name), shown_train_command(state.path), ws.next_run_name(), None)

    def stop(run_name: str) -> tuple[Any, ...]:
        if not run_name:
            raise UserError("choose a run to stop")
        state = launcher.stop(run_name)
        last = state.checkpoints[-1].name if state.checkpoints else None
        how = f"Resume continues from {last}" if last else "no checkpoint yet: Resume starts from the beginning"
        return message(f"stopped run {run_name}; {how}"), None

    def resume(run_name: str) -> tuple[Any, ...]:
        if not run_name:
            raise UserError("choose a run to resume")
        before = run_state(ws.run_dir(run_name))
        state = launcher.resume(run_name)
        start_at = f"from {before.checkpoints[-1].name}" if before.checkpoints else "from the beginning (no checkpoint)"
        return message(f"resumed run {run_name} {start_at} (pid {state.pid})"), shown_train_command(state.path), None

    start_inputs = [ui.run_name, ui.model_path, ui.data_files, ui.id_name, ui.id_author, ui.plan_extra, *ui.settings]
    ui.train_start.click(safe(start, 5), start_inputs,
                         [ui.train_msg, ui.run_select, ui.train_cmd, ui.run_name, ui.train_key])
    ui.train_stop.click(safe(stop, 2), [ui.run_select], [ui.train_msg, ui.train_key])
    ui.train_resume.click(safe(resume, 3), [ui.run_select], [ui.train_msg, ui.train_cmd, ui.train_key])
    ui.train_refresh.click(lambda: run_choices(ws), None, [ui.run_select])
    gr.on([ui.run_select.change, ui.train_refresh.click], safe(lambda name: run_view(ws, name, None), 7),
          [ui.run_select], view_outputs)
    ui.train_timer.tick(safe(lambda name, last: run_view(ws, name, last), 7), [ui.run_select, ui.train_key],
                        view_outputs, show_progress="hidden")
