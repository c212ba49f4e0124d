"""The Gradio app: seven pages over one workspace folder, and ``serve`` to run it on ``host:port``."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import gradio as gr

from glmtune.argtypes import is_loopback
from glmtune.ui.chat_page import ChatModels
from glmtune.ui.runs import Launcher
from glmtune.ui.tabs_prepare import data_tab, model_tab, plan_tab, wire_data, wire_model, wire_plan
from glmtune.ui.tabs_run import run_choices, train_tab, wire_train
from glmtune.ui.tabs_use import (
    chat_tab,
    eval_tab,
    export_tab,
    refreshed,
    wire_chat,
    wire_eval,
    wire_export,
)
from glmtune.ui.widgets import CSS
from glmtune.ui.workspace import Workspace, shown

log = logging.getLogger(__name__)
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # no web fonts fetched: the UI works offline


def build_app(ws: Workspace) -> gr.Blocks:
    """The seven pages, wired to the handlers of ``glmtune.ui``."""
    ui = SimpleNamespace()
    launcher, models = Launcher(ws), ChatModels()
    with gr.Blocks(title="glmtune", analytics_enabled=False) as app:  # no analytics: nothing leaves the machine
        gr.Markdown(f"## glmtune · fine-tune a chat model\nWorkspace: `{shown(ws.root)}` — models, uploads, plans, "
                    "runs and exports are kept there. Every action shows the `glmtune` command that does the same.")
        with gr.Tabs(elem_id="pages"):
            model_tab(ui)
            data_tab(ui)
            plan_tab(ui, ws)
            train_tab(ui)
            eval_tab(ui)
            chat_tab(ui)
            export_tab(ui)
        wire_model(ui, ws)
        wire_plan(ui, ws)
        wire_data(ui, ws)
        wire_train(ui, ws, launcher)
        wire_eval(ui, ws)
        wire_chat(ui, ws, models)
        wire_export(ui, ws)
        app.load(lambda: on_load(ws), None,
                 [ui.run_select, ui.run_name, ui.eval_adapter, ui.chat_adapter, ui.export_adapter])
    app.glmtune_ui = ui  # the components, for tests
    return app


def on_load(ws: Workspace) -> tuple[Any, ...]:
    """A (re)loaded page finds the workspace's runs: the running one selected, a fresh run name to plan."""
    return (run_choices(ws), ws.next_run_name(), refreshed(ws, None), refreshed(ws, None), refreshed(ws, None))


def serve(host: str, port: int, auth: tuple[str, str] | None, workdir: str, block: bool = True) -> Any:
    """Build the app over ``workdir`` and serve it; ``block=False`` returns the running app (tests)."""
    ws = Workspace.create(workdir)
    if not is_loopback(host) and auth is None:
        log.warning(f"warning: listening on {host} without --auth: anyone who can reach port {port} can train, "
                    "read and write files as this user. Prefer 127.0.0.1 with an SSH tunnel (docs/guides/ui.md).")
    app = build_app(ws)
    theme = gr.themes.Default(font=SYSTEM_FONTS, font_mono=["ui-monospace", "monospace"])
    log.info(f"glmtune ui: http://{host}:{port} (workspace {ws.root}); Ctrl-C stops the UI, not a running training")
    app.queue(default_concurrency_limit=1)
    app.launch(server_name=host, server_port=port, auth=auth, prevent_thread_lock=not block, quiet=True,
               ssr_mode=False, allowed_paths=[str(ws.root)], theme=theme, css=CSS, show_error=True,
               footer_links=["gradio", "settings"], share=False, inbrowser=False)
    return app
