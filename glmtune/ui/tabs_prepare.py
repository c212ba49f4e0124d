"""The Model, Data and Plan pages: their components and what their buttons do."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace
from typing import Any

import gradio as gr

from glmtune.errors import UserError
from glmtune.tiny.families import FAMILY_NAMES
from glmtune.ui.data_page import check_data
from glmtune.ui.model_page import inspect_model, make_tiny_model
from glmtune.ui.plan_page import SETTING_KEYS, SETTINGS, draft_config, plan_config, write_draft
from glmtune.ui.widgets import command_box, safe, status_box
from glmtune.ui.workspace import Workspace, command, message, shown


def model_tab(ui: SimpleNamespace) -> None:
    """Page 1: choose a model folder or make a tiny one; show its layout, stop tokens and size."""
    with gr.Tab("1 · Model", id="model"):
        gr.Markdown("Choose a local model folder (a Hugging Face folder with `config.json` and a tokenizer), or "
                    "make a tiny random model to try the whole flow in a minute on a CPU.")
        with gr.Row():
            ui.model_path = gr.Textbox(label="Model folder", placeholder="/models/glm-4-9b-chat-hf", scale=4,
                                       elem_id="model-path")
            ui.model_use = gr.Button("Use this model", variant="primary", scale=1, elem_id="model-use")
        with gr.Row():
            ui.tiny_family = gr.Dropdown(list(FAMILY_NAMES), value="glm4", label="Tiny model family",
                                         elem_id="tiny-family", scale=1)
            ui.model_make = gr.Button("Make a tiny model", scale=1, elem_id="model-make-tiny")
        ui.model_msg = status_box("model-msg")
        ui.model_info = gr.Markdown(elem_id="model-info")
        ui.model_cmd = command_box("model-cmd")


def wire_model(ui: SimpleNamespace, ws: Workspace) -> None:
    """The Model page's buttons."""

    def use(path: str) -> tuple[Any, ...]:
        info = inspect_model(path)
        also = ("# no single command; the layout and stop tokens are printed by\n"
                + command("data", "tokenize", "--model", info.path, "--data", "FILE", "--out", "tokens.jsonl",
                          "--show", "1"))
        return (message(f"using {info.path}: a {info.params:,}-parameter {info.layout} model"), info.markdown(),
                also)

    def make(family: str) -> tuple[Any, ...]:
        out, made, cmd = make_tiny_model(ws, family)
        info = inspect_model(str(out))
        what = "made" if made else "already there, reused"
        return str(out), message(f"tiny {family} model {what}: {shown(out)}"), info.markdown(), cmd

    gr.on([ui.model_use.click, ui.model_path.submit], safe(use, 3), [ui.model_path],
          [ui.model_msg, ui.model_info, ui.model_cmd])
    ui.model_make.click(safe(make, 4, at=1), [ui.tiny_family],
                        [ui.model_path, ui.model_msg, ui.model_info, ui.model_cmd])


def data_tab(ui: SimpleNamespace) -> None:
    """Page 2: upload or pick data files, fill the placeholders, check them."""
    with gr.Tab("2 · Data", id="data"):
        gr.Markdown("Upload or type data files in any supported format (GLM-4 messages, OpenAI, Alpaca, ShareGPT; "
                    ".jsonl/.json/.csv/.parquet). The check validates, repairs and quarantines: every record is "
                    "either kept or listed in the quarantine with its `file:line` and reason.")
        ui.data_upload = gr.File(label="Upload data files", file_count="multiple", elem_id="data-upload")
        ui.data_files = gr.Textbox(label="Data files (one path per line)", lines=2, elem_id="data-files")
        with gr.Row():
            ui.id_name = gr.Textbox(label="Assistant name (fills {{name}})", elem_id="id-name")
            ui.id_author = gr.Textbox(label="Author (fills {{author}})", elem_id="id-author")
        ui.data_check = gr.Button("Check the data", variant="primary", elem_id="data-check")
        ui.data_msg = status_box("data-msg")
        ui.data_summary = gr.Markdown(elem_id="data-summary")
        ui.data_quarantine = gr.Dataframe(headers=["where (file:line)", "code", "reason"], label="Quarantine",
                                          interactive=False, wrap=True, elem_id="data-quarantine")
        ui.data_samples = gr.HTML(elem_id="data-samples")
        with gr.Accordion("Statistics and every problem found", open=False):
            ui.data_stats = gr.Textbox(label="Statistics", lines=8, interactive=False, elem_id="data-stats")
            ui.data_problems = gr.Dataframe(headers=["where", "kind", "code", "reason"], label="Problems",
                                            interactive=False, wrap=True, elem_id="data-problems")
        ui.data_cmd = command_box("data-cmd")


def wire_data(ui: SimpleNamespace, ws: Workspace) -> None:
    """The Data page's upload and check."""

    def upload(files: list[str] | None, current: str) -> tuple[Any, ...]:
        saved = [str(ws.save_upload(f)) for f in files or []]
        lines = [line for line in (current or "").splitlines() if line.strip()]
        lines += [s for s in saved if s not in lines]
        return "\n".join(lines), message(f"uploaded {len(saved)} file(s) to {shown(ws.data)}")

    def check(files: str, name: str, author: str, model: str, max_length: str) -> tuple[Any, ...]:
        try:
            length = int(max_length) if (max_length or "").strip() else None
        except ValueError:
            length = None  # the Plan page reports a bad max length; the check counts lengths without a limit
        report = check_data(ws, files, name, author, model, length)
        ok = report.kept > 0
        text = (f"{report.kept} kept, {report.quarantined} quarantined" if ok else
                "nothing usable: every record was quarantined (see the reasons below)")
        return (message(text, ok=ok), report.summary, report.quarantine, report.samples, report.stats,
                report.problems, "\n".join(report.commands))

    ui.data_upload.upload(safe(upload, 2, at=1), [ui.data_upload, ui.data_files], [ui.data_files, ui.data_msg])
    gr.on([ui.data_check.click, ui.data_files.submit], safe(check, 7),
          [ui.data_files, ui.id_name, ui.id_author, ui.model_path, ui.settings[SETTING_KEYS.index("data.max_length")]],
          [ui.data_msg, ui.data_summary, ui.data_quarantine, ui.data_samples, ui.data_stats, ui.data_problems,
           ui.data_cmd])


def plan_tab(ui: SimpleNamespace, ws: Workspace) -> None:
    """Page 3: the run name and the main settings; the resolved plan with a reason for each value."""
    with gr.Tab("3 · Plan", id="plan"):
        gr.Markdown("Every value left at `auto` is chosen by the planner from the data and the model; the table "
                    "says why. Edit a value and press Enter (or leave the field) to plan again.")
        ui.run_name = gr.Textbox(label="Run name (its folder under runs/)", value=ws.next_run_name(),
                                 elem_id="run-name")
        ui.settings = []
        for row in range(0, len(SETTINGS), 4):
            with gr.Row():
                for key, label, default in SETTINGS[row:row + 4]:
                    ui.settings.append(gr.Textbox(label=f"{label} ({key})", value=default,
                                                  elem_id="set-" + key.replace(".", "-").replace("_", "-")))
        ui.plan_extra = gr.Textbox(label="More settings, one key=value per line (as on the command line)", lines=2,
                                   placeholder="training.warmup_ratio=0.1", elem_id="plan-extra")
        ui.plan_run = gr.Button("Plan", variant="primary", elem_id="plan-run")
        ui.plan_msg = status_box("plan-msg")
        ui.plan_title = gr.Markdown(elem_id="plan-title")
        ui.plan_table = gr.Dataframe(headers=["key", "value", "from", "why"], interactive=False, wrap=True,
                                     elem_id="plan-table")
        ui.plan_cmd = command_box("plan-cmd")
        ui.plan_last = gr.State("")


def page_config(ws: Workspace, run_name: str, model: str, files: str, name: str, author: str, extra: str,
                values: tuple[str, ...]) -> dict[str, Any]:
    """The config of the Model, Data and Plan pages' fields (``ConfigError`` names a wrong key)."""
    if len(values) != len(SETTING_KEYS):
        raise UserError("the page's settings are incomplete; reload the page")
    return draft_config(ws, run_name, model, files, name, author, dict(zip(SETTING_KEYS, values)), extra)


def wire_plan(ui: SimpleNamespace, ws: Workspace) -> None:
    """Plan on the button, and again whenever a setting is submitted or left (skipped when nothing changed)."""

    def plan(run_name: str, model: str, files: str, name: str, author: str, extra: str, last: str,
             *values: str) -> tuple[Any, ...]:
        data = page_config(ws, run_name, model, files, name, author, extra, values)
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        if digest == last:
            return (gr.skip(),) * 5
        view = plan_config(write_draft(ws, run_name.strip(), data))
        return (message(f"planned {shown(view.config_path)}" if view.config_path else "planned"),
                f"**{view.title}**", view.rows, view.command, digest)

    def plan_click(*args: str) -> tuple[Any, ...]:
        return plan(*args[:6], "", *args[7:])

    inputs = [ui.run_name, ui.model_path, ui.data_files, ui.id_name, ui.id_author, ui.plan_extra, ui.plan_last,
              *ui.settings]
    outputs = [ui.plan_msg, ui.plan_title, ui.plan_table, ui.plan_cmd, ui.plan_last]
    fields = [*ui.settings, ui.plan_extra, ui.run_name]
    gr.on([f.submit for f in fields] + [f.blur for f in fields], safe(plan, 5), inputs, outputs,
          trigger_mode="always_last")
    ui.plan_run.click(safe(plan_click, 5), inputs, outputs, trigger_mode="always_last")
