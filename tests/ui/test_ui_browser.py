"""The web UI driven in headless Chromium, as a person uses it: tiny model -> data check with a quarantined line
-> plan (and a wrong value) -> train while the curve updates, stop, resume -> reload -> evaluate -> chat -> export.

Screenshots land in the test's tmp folder; with GLMTUNE_UI_SCREENSHOTS=docs/images the main ones are copied
there as ui-*.png (the guide shows them). Skipped only where Chromium, Playwright or Gradio is missing.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.ui.conftest import Server, identity_file

CHROMIUM = os.environ.get("GLMTUNE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = ("model", "data", "plan", "train", "eval", "chat", "export")


def browser_or_skip() -> None:
    """Skip with the reason when the browser or its driver is not there (no browser is ever downloaded)."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install 'glmtune[test]')")
    pytest.importorskip("gradio", reason="gradio is not installed (pip install 'glmtune[ui]')")


class Page:
    """A thin helper over the Playwright page: fields and texts by element id, waits with clear failures."""

    def __init__(self, page, shots: Path) -> None:
        self.page, self.shots = page, shots

    def tab(self, name: str) -> None:
        """Open a page by its tab."""
        self.page.get_by_role("tab", name=name).click()

    def fill(self, elem_id: str, text: str) -> None:
        """Type into the text field (or number field) with this id."""
        self.page.locator(f"#{elem_id} textarea, #{elem_id} input").first.fill(text)

    def text(self, elem_id: str) -> str:
        """What the element shows."""
        return self.page.locator(f"#{elem_id}").inner_text()

    def wait_text(self, elem_id: str, needle: str, timeout_s: float = 90) -> str:
        """Wait until the element shows ``needle``; fail with what it shows instead."""
        try:
            self.page.wait_for_function(
                "([id, t]) => (document.getElementById(id)?.innerText || '').includes(t)",
                arg=[elem_id, needle], timeout=timeout_s * 1000)
        except Exception:
            pytest.fail(f"#{elem_id} never showed {needle!r}; it shows: {self.text(elem_id)[:2000]!r}")
        return self.text(elem_id)

    def wait_step(self, at_least: int, timeout_s: float = 120) -> int:
        """Wait until the Train page's progress line shows step >= ``at_least``; return the step."""
        self.page.wait_for_function(
            "([n]) => { const m = (document.getElementById('train-progress')?.innerText || '')"
            ".match(/step (\\d+) \\//); return m && Number(m[1]) >= n; }", arg=[at_least], timeout=timeout_s * 1000)
        return int(re.search(r"step (\d+) /", self.text("train-progress")).group(1))

    def curve_src(self) -> str:
        """The training curves' image (a data URL)."""
        return self.page.locator("#train-curves img").first.get_attribute("src") or ""

    def shot(self, name: str) -> None:
        """Save a full-page screenshot as ui-NAME.png."""
        self.page.wait_for_timeout(500)  # let the updated outputs fade in
        self.page.screenshot(path=str(self.shots / f"ui-{name}.png"), full_page=True)


def copy_screenshots(shots: Path) -> None:
    """Copy the main screenshots to $GLMTUNE_UI_SCREENSHOTS (e.g. docs/images) when it is set."""
    target = os.environ.get("GLMTUNE_UI_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for name in SHOTS:
            if (shots / f"ui-{name}.png").is_file():
                shutil.copyfile(shots / f"ui-{name}.png", Path(target) / f"ui-{name}.png")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_whole_fine_tune_in_the_browser(ui_server: Server, tmp_path: Path):
    browser_or_skip()
    from playwright.sync_api import sync_playwright

    data = identity_file(tmp_path / "identity.jsonl")
    (tmp_path / "not-a-model").mkdir()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(60_000)
            page.goto(ui_server.url)
            ui = Page(page, shots)
            prepare(ui, tmp_path, data)
            train(ui, ui_server)
            page.reload()  # the run is found again from its folder
            ui.tab("4 · Train")
            ui.wait_text("train-progress", "finished")
            use(ui, ui_server)
        finally:
            copy_screenshots(shots)
            browser.close()


def prepare(ui: Page, tmp_path: Path, data: Path) -> None:
    """Model, Data and Plan pages, with a folder that is not a model and a value of the wrong type."""
    ui.fill("model-path", str(tmp_path / "not-a-model"))
    ui.page.click("#model-use")
    assert "has no config.json" in ui.wait_text("model-msg", "error")
    ui.page.click("#model-make-tiny")
    ui.wait_text("model-msg", "tiny glm4 model")
    info = ui.text("model-info")
    assert "glm4" in info and "<|user|>" in info and "1,057,152" in info
    ui.shot("model")

    ui.tab("2 · Data")
    ui.page.set_input_files("#data-upload input[type=file]", str(data))
    ui.page.wait_for_function("() => (document.querySelector('#data-files textarea')?.value || '')"
                              ".includes('identity.jsonl')")
    ui.fill("id-name", "Nova")
    ui.fill("id-author", "Acme Lab")
    ui.page.click("#data-check")
    ui.wait_text("data-msg", "30 kept, 1 quarantined")
    assert "kept 30 + quarantined 1" in ui.text("data-summary")
    quarantine = ui.text("data-quarantine")
    assert "identity.jsonl:31" in quarantine and "malformed_json" in quarantine
    assert ui.page.locator("#data-samples mark.glmtune-trained").count() >= 3
    assert "Nova" in ui.text("data-samples")  # the placeholder filled where it is trained
    assert "glmtune data check" in ui.text("data-cmd")
    ui.shot("data")

    ui.tab("3 · Plan")
    settings = {"set-training-learning-rate": "abc", "set-training-num-train-epochs": "3",
                "set-data-max-length": "64", "set-training-per-device-train-batch-size": "4",
                "set-training-save-steps": "2", "set-data-self-replay": "0"}
    for elem_id, value in settings.items():
        ui.fill(elem_id, value)
    ui.page.click("#plan-run")
    assert "must be a number" in ui.wait_text("plan-msg", "training.learning_rate")
    ui.fill("set-training-learning-rate", "5e-3")
    ui.page.click("#plan-run")
    ui.wait_text("plan-msg", "planned")
    table = ui.wait_text("plan-table", "training.learning_rate")
    assert re.search(r"training\.learning_rate\s+0\.005\s+config", table), table  # rows further down scroll
    assert "why" in table and "peft.lora.r" in table
    assert "glmtune plan" in ui.text("plan-cmd")
    ui.shot("plan")


def train(ui: Page, server: Server) -> None:
    """Start, watch the curve grow, refuse a second run, stop, resume to the end."""
    ui.tab("4 · Train")
    ui.page.click("#train-start")
    ui.wait_text("train-msg", "started run run-1")
    assert "glmtune train" in ui.text("train-cmd") and "--resume auto" in ui.text("train-cmd")
    first_step = ui.wait_step(1)  # the curve is drawn from the first logged step
    first_curve = ui.curve_src()
    assert first_curve.startswith("data:image")
    ui.page.click("#train-start")  # a second run while one trains: refused, nothing lost
    ui.wait_text("train-msg", "one run trains at a time")
    step = ui.wait_step(max(3, first_step + 1))
    assert ui.curve_src() != first_curve, "the curve did not change while training"
    assert "tokens/s" in ui.text("train-progress")
    ui.page.click("#train-stop")
    msg = ui.wait_text("train-msg", "stopped run run-1")
    assert "Resume continues from checkpoint-" in msg, msg
    assert "stopped" in ui.wait_text("train-progress", "stopped")
    ui.page.click("#train-resume")
    ui.wait_text("train-msg", "resumed run run-1 from checkpoint-")
    done = ui.wait_text("train-progress", "finished", timeout_s=240)
    assert "step 21 / 21" in done, done
    assert step < 21
    run = server.workdir / "runs" / "run-1"
    assert (run / "adapter_model.safetensors").is_file() and (run / "report.html").is_file()
    assert "resuming from" in (run / "ui-train.log").read_text(encoding="utf-8")
    assert "report.html" in ui.text("train-links")
    ui.shot("train")


def use(ui: Page, server: Server) -> None:
    """Evaluate on the identity probes, chat side by side, export."""
    ui.tab("5 · Evaluate")
    ui.page.wait_for_function("() => (document.querySelector('#eval-adapter input')?.value || '').includes('run-1')")
    ui.fill("eval-name", "Nova")
    ui.fill("eval-author", "Acme Lab")
    ui.fill("eval-tokens", "16")
    ui.page.click("#eval-run")
    ui.wait_text("eval-msg", "evaluated", timeout_s=180)
    assert "adoption of 'Nova'" in ui.text("eval-metrics")
    href = ui.page.locator("#eval-report a").first.get_attribute("href")
    report = ui.page.request.get(server.url.rstrip("/") + href)
    assert report.status == 200 and "glmtune" in report.text()
    assert "glmtune eval" in ui.text("eval-cmd")
    ui.shot("eval")

    ui.tab("6 · Chat")
    ui.fill("chat-system", "You are a helpful assistant.")
    ui.fill("chat-tokens", "24")
    ui.fill("chat-input", "Who are you?")
    ui.page.click("#chat-send")
    ui.wait_text("chat-msg", "replies done", timeout_s=120)
    assert "Who are you?" in ui.text("chat-base") and "Who are you?" in ui.text("chat-tuned")
    ui.fill("chat-input", "Who made you?")  # a second turn on both sides
    ui.page.click("#chat-send")
    ui.wait_text("chat-tuned", "Who made you?")
    ui.wait_text("chat-msg", "replies done", timeout_s=120)
    assert "glmtune chat" in ui.text("chat-cmd")
    ui.shot("chat")

    ui.tab("7 · Export")
    ui.page.get_by_label("fp32").check()
    ui.page.click("#export-run")
    ui.wait_text("export-msg", "exported to", timeout_s=120)
    assert "model.safetensors" in ui.text("export-files")
    assert (server.workdir / "exports" / "run-1" / "model.safetensors").is_file()
    assert "--dtype fp32" in ui.text("export-cmd")
    ui.shot("export")
