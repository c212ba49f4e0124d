"""The Evaluate, Chat and Export pages: use a finished run or one of its checkpoints."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import gradio as gr

from glmtune.ui.chat_page import ChatModels, chat_command, chat_turn, resolve_models, shown_history
from glmtune.ui.eval_page import run_eval
from glmtune.ui.export_page import run_export
from glmtune.ui.runs import adapter_choices
from glmtune.ui.widgets import command_box, file_link, safe, safe_stream, status_box
from glmtune.ui.workspace import Workspace, message, shown


def adapter_picker(elem_id: str) -> gr.Dropdown:
    """A finished run or one of its checkpoints (the list is refreshed when the page is opened)."""
    return gr.Dropdown(label="Fine-tuned run or checkpoint", choices=[], elem_id=elem_id, scale=3)


def refreshed(ws: Workspace, current: str | None) -> Any:
    """The adapter choices now, keeping the current one when it is still there."""
    choices = adapter_choices(ws)
    values = [v for _, v in choices]
    return gr.Dropdown(choices=choices, value=current if current in values else (values[0] if values else None))


def eval_tab(ui: SimpleNamespace) -> None:
    """Page 5: evaluate on a data file or on the identity probes."""
    with gr.Tab("5 · Evaluate", id="eval") as ui.eval_page:
        gr.Markdown("Generates answers with the fine-tuned model and scores them as `glmtune eval` does: ROUGE/BLEU "
                    "against a data file's replies, or adoption of the new name on the identity probes, plus loops, "
                    "end tokens and retention against the base. The results go into the run's report.")
        ui.eval_adapter = adapter_picker("eval-adapter")
        with gr.Row():
            ui.eval_mode = gr.Radio(["identity probes", "data file"], value="identity probes", label="Evaluate on",
                                    elem_id="eval-mode")
            ui.eval_data = gr.Textbox(label="Data file (for 'data file')", elem_id="eval-data")
            ui.eval_probes = gr.Textbox(label="Probe file (blank: the bundled bilingual set)", elem_id="eval-probes")
        with gr.Row():
            ui.eval_name = gr.Textbox(label="Expected name", elem_id="eval-name")
            ui.eval_author = gr.Textbox(label="Expected author", elem_id="eval-author")
            ui.eval_tokens = gr.Number(value=64, precision=0, minimum=1, label="Max new tokens", elem_id="eval-tokens")
            ui.eval_batch = gr.Number(value=16, precision=0, minimum=1, label="Batch size", elem_id="eval-batch")
        ui.eval_run = gr.Button("Evaluate", variant="primary", elem_id="eval-run")
        ui.eval_msg = status_box("eval-msg")
        ui.eval_report = gr.HTML(elem_id="eval-report")
        ui.eval_metrics = gr.Dataframe(headers=["section", "metric", "value"], label="Metrics", interactive=False,
                                       elem_id="eval-metrics")
        ui.eval_examples = gr.Dataframe(label="Example answers", interactive=False, wrap=True,
                                        elem_id="eval-examples")
        ui.eval_cmd = command_box("eval-cmd")


def wire_eval(ui: SimpleNamespace, ws: Workspace) -> None:
    """The Evaluate button; the Data page's name and author carried over."""

    def evaluate(adapter: str, mode: str, data: str, probes: str, name: str, author: str, tokens: float,
                 batch: float, model: str) -> tuple[Any, ...]:
        view = run_eval(adapter, mode == "data file", data, name, author, int(tokens or 64), int(batch or 16),
                        probes, model)
        report = ("report updated: " + file_link(view.report)) if view.report else (
            f"results in <code>{shown(view.metrics_path)}</code>" if view.metrics_path else "")
        table = gr.Dataframe(value=view.examples, headers=view.example_headers)
        return message(f"evaluated {shown(adapter)}"), report, view.metrics, table, view.command

    ui.eval_run.click(safe(evaluate, 5),
                      [ui.eval_adapter, ui.eval_mode, ui.eval_data, ui.eval_probes, ui.eval_name, ui.eval_author,
                       ui.eval_tokens, ui.eval_batch, ui.model_path],
                      [ui.eval_msg, ui.eval_report, ui.eval_metrics, ui.eval_examples, ui.eval_cmd])
    ui.id_name.change(lambda v: v, [ui.id_name], [ui.eval_name])
    ui.id_author.change(lambda v: v, [ui.id_author], [ui.eval_author])
    ui.eval_page.select(lambda v: refreshed(ws, v), [ui.eval_adapter], [ui.eval_adapter])


def chat_tab(ui: SimpleNamespace) -> None:
    """Page 6: base and fine-tuned answers side by side."""
    with gr.Tab("6 · Chat", id="chat") as ui.chat_page:
        gr.Markdown("The base model (left) and the fine-tuned run or checkpoint (right) answer the same message, "
                    "streamed, greedy, as `glmtune chat` does; each side keeps its own conversation.")
        with gr.Row():
            ui.chat_adapter = adapter_picker("chat-adapter")
            ui.chat_tokens = gr.Number(value=128, precision=0, minimum=1, label="Max new tokens",
                                       elem_id="chat-tokens", scale=1)
        ui.chat_system = gr.Textbox(label="System prompt (optional)", elem_id="chat-system")
        with gr.Row():
            ui.chat_base = gr.Chatbot(label="base model", elem_id="chat-base", height=320, buttons=["copy_all"])
            ui.chat_tuned = gr.Chatbot(label="fine-tuned", elem_id="chat-tuned", height=320, buttons=["copy_all"])
        with gr.Row():
            ui.chat_input = gr.Textbox(label="Message", placeholder="Who are you?", elem_id="chat-input", scale=4)
            ui.chat_send = gr.Button("Send", variant="primary", elem_id="chat-send", scale=1)
            ui.chat_clear = gr.Button("New conversation", elem_id="chat-clear", scale=1)
        ui.chat_msg = status_box("chat-msg")
        ui.chat_cmd = command_box("chat-cmd")
        ui.chat_hist_base = gr.State([])
        ui.chat_hist_tuned = gr.State([])


def wire_chat(ui: SimpleNamespace, ws: Workspace, models: ChatModels) -> None:
    """Send streams both replies; New conversation clears both sides."""

    def send(adapter: str, model: str, system: str, text: str, base_hist: list, tuned_hist: list,
             tokens: float) -> Iterator[tuple[Any, ...]]:
        base, adapter = resolve_models(adapter, model)
        cmd = chat_command(base, adapter, int(tokens or 128))
        for left, right, note in chat_turn(models, base, adapter, system, text, (base_hist, tuned_hist),
                                           int(tokens or 128)):
            yield shown_history(left), shown_history(right), left, right, message(note), cmd, ""

    outputs = [ui.chat_base, ui.chat_tuned, ui.chat_hist_base, ui.chat_hist_tuned, ui.chat_msg, ui.chat_cmd,
               ui.chat_input]
    gr.on([ui.chat_send.click, ui.chat_input.submit], safe_stream(send, 7, at=4),
          [ui.chat_adapter, ui.model_path, ui.chat_system, ui.chat_input, ui.chat_hist_base, ui.chat_hist_tuned,
           ui.chat_tokens], outputs)
    ui.chat_clear.click(lambda: ([], [], [], [], message("new conversation")), None, outputs[:5])
    ui.chat_page.select(lambda v: refreshed(ws, v), [ui.chat_adapter], [ui.chat_adapter])


def export_tab(ui: SimpleNamespace) -> None:
    """Page 7: merge into a standard model folder."""
    with gr.Tab("7 · Export", id="export") as ui.export_page:
        gr.Markdown("Merges the LoRA adapter into the base weights and writes a standard Hugging Face folder "
                    "(safetensors, tokenizer with its chat template, all stop ids, a model card), as "
                    "`glmtune export` does.")
        ui.export_adapter = adapter_picker("export-adapter")
        with gr.Row():
            ui.export_out = gr.Textbox(label="Output folder (blank: exports/<run> in the workspace)",
                                       elem_id="export-out", scale=3)
            ui.export_dtype = gr.Radio(["bf16", "fp32"], value="bf16", label="dtype", elem_id="export-dtype")
            ui.export_overwrite = gr.Checkbox(label="overwrite a non-empty folder", elem_id="export-overwrite")
        ui.export_run = gr.Button("Export", variant="primary", elem_id="export-run")
        ui.export_msg = status_box("export-msg")
        ui.export_files = gr.Dataframe(headers=["file", "size"], label="Written to the output folder", interactive=False,
                                       elem_id="export-files")
        ui.export_cmd = command_box("export-cmd")


def wire_export(ui: SimpleNamespace, ws: Workspace) -> None:
    """The Export button."""

    def export(adapter: str, out: str, dtype: str, overwrite: bool, model: str) -> tuple[Any, ...]:
        view = run_export(ws, adapter, out, dtype, bool(overwrite), model)
        return message(f"exported to {shown(view.out)} ({dtype})"), view.files, view.command

    ui.export_run.click(safe(export, 3),
                        [ui.export_adapter, ui.export_out, ui.export_dtype, ui.export_overwrite, ui.model_path],
                        [ui.export_msg, ui.export_files, ui.export_cmd])
    ui.export_page.select(lambda v: refreshed(ws, v), [ui.export_adapter], [ui.export_adapter])
