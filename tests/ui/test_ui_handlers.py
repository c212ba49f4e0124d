"""The web UI's handlers without a browser: what each page shows, and a clear message for each bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from glmtune.config.loader import ConfigError
from glmtune.errors import UserError
from glmtune.ui.data_page import check_data
from glmtune.ui.model_page import inspect_model
from glmtune.ui.plan_page import SETTING_KEYS, draft_config, plan_page
from glmtune.ui.workspace import Workspace, check_run_name, command


@pytest.fixture()
def ws(tmp_path: Path) -> Workspace:
    return Workspace.create(tmp_path / "ws")


def test_commands_are_ready_to_copy():
    assert command("plan", Path("a b.yaml")) == "glmtune plan 'a b.yaml'"
    long = command("data", "check", "x.jsonl", "--set", "author=Acme Lab", "--model", "/m" * 40, "--max-length", "64")
    assert long.splitlines()[0] == "glmtune data check x.jsonl \\"
    assert "  --set 'author=Acme Lab' \\" in long.splitlines()


def test_run_names_and_uploads(ws: Workspace, tmp_path: Path):
    for bad in ("", "../x", "a/b", ".hidden", "x" * 65):
        with pytest.raises(UserError, match="run name"):
            check_run_name(bad)
    assert ws.next_run_name() == "run-1"
    (ws.plans / "run-1.yaml").write_text("x: 1\n")
    assert ws.next_run_name() == "run-2"
    first, second = tmp_path / "a" / "d.jsonl", tmp_path / "b" / "d.jsonl"
    for path, text in ((first, "1\n"), (second, "2\n")):
        path.parent.mkdir()
        path.write_text(text)
    assert ws.save_upload(first) == ws.data / "d.jsonl"
    assert ws.save_upload(first) == ws.data / "d.jsonl"  # the same bytes: the same file
    other = ws.save_upload(second)  # another file of the same name is kept beside it, nothing overwritten
    assert other != ws.data / "d.jsonl" and other.read_text() == "2\n"


def test_model_page_shows_layout_stop_tokens_and_size(tiny_model: Path):
    info = inspect_model(str(tiny_model))
    assert info.layout == "glm4" and info.params == 1_057_152
    assert info.stop_tokens == ["<|endoftext|>", "<|user|>", "<|observation|>"]
    assert "Glm4ForCausalLM" in info.markdown() and "1,057,152" in info.markdown()


def test_a_folder_that_is_not_a_model_is_a_clear_error(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has no config.json"):
        inspect_model(str(tmp_path / "empty"))
    with pytest.raises(UserError, match="not found"):
        inspect_model(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="choose a model folder"):
        inspect_model("  ")


def test_data_check_counts_the_quarantine_and_marks_trained_tokens(ws: Workspace, tiny_model: Path,
                                                                    identity_data: Path):
    report = check_data(ws, str(identity_data), "Nova", "Acme Lab", str(tiny_model), 64)
    assert (report.kept, report.quarantined) == (30, 1)
    assert "input 31 = kept 30 + quarantined 1" in report.summary
    assert report.quarantine == [["identity.jsonl:31", "malformed_json", report.quarantine[0][2]]]
    assert report.samples.count('<mark class="glmtune-trained">') >= 3 and "Nova" in report.samples
    assert "prompt length (tokens)" in report.stats
    assert report.commands[0].startswith("glmtune data check ")
    assert "--set name=Nova" in report.commands[0] and (ws.checks / "identity.jsonl.quarantine.jsonl").is_file()


def test_unreadable_data_is_reported_not_raised_as_a_crash(ws: Workspace, tmp_path: Path):
    binary = tmp_path / "photo.jsonl"
    # two lines of bytes that no UTF-8 text holds (random bytes could hold a newline and a valid short line)
    binary.write_bytes(bytes(range(0x80, 0x100)) * 8 + b"\n" + b"\xff" * 500)
    report = check_data(ws, str(binary))
    assert report.kept == 0 and report.quarantined >= 1 and "nothing usable" in report.summary
    assert {row[1] for row in report.quarantine} == {"bad_encoding"}
    with pytest.raises(UserError, match="not found"):
        check_data(ws, str(tmp_path / "missing.jsonl"))
    with pytest.raises(UserError, match="choose or upload"):
        check_data(ws, "\n  \n")


def test_plan_page_writes_the_config_and_explains_each_value(ws: Workspace, tiny_model: Path, identity_data: Path):
    settings = dict.fromkeys(SETTING_KEYS, "")
    settings.update({"training.learning_rate": "5e-3", "data.max_length": "64", "data.self_replay": "0"})
    view = plan_page(ws, "run-1", str(tiny_model), str(identity_data), "Nova", "Acme Lab", settings,
                     "training.warmup_ratio=0.1")
    rows = {row[0]: row for row in view.rows}
    assert rows["training.learning_rate"][1:3] == ["0.005", "config"]
    assert rows["training.warmup_ratio"][1:3] == ["0.1", "config"]
    assert rows["peft.lora.r"][2] == "auto" and rows["peft.lora.r"][3]
    assert "30 samples" in view.title and view.command == f"glmtune plan {view.config_path}"
    assert "learning_rate: 0.005" in (ws.plans / "run-1.yaml").read_text()


@pytest.mark.parametrize(("settings", "extra", "error"), [
    ({"training.learning_rate": "abc"}, "", r"training\.learning_rate: must be a number or 'auto' \(got 'abc'\)"),
    ({"training.max_steps": "1.5"}, "", r"training\.max_steps: must be a whole number"),
    ({}, "training.nope=1", r"training\.nope: unknown key"),
    ({}, "training.output_dir=/tmp/elsewhere", r"the page sets training\.output_dir"),
    ({}, "no equals sign", r"must look like section\.key=value"),
])
def test_a_config_value_of_the_wrong_type_names_the_key(ws: Workspace, tmp_path: Path, settings: dict, extra: str,
                                                        error: str):
    data = tmp_path / "d.jsonl"
    data.write_text("{}\n")
    with pytest.raises((ConfigError, UserError), match=error):
        draft_config(ws, "run-1", "/some/model", str(data), None, None, settings, extra)
    assert not (ws.plans / "run-1.yaml").exists()  # nothing written for a config that is not valid


def test_plan_needs_a_model_and_data(ws: Workspace):
    with pytest.raises(UserError, match="Model page"):
        draft_config(ws, "run-1", "", "d.jsonl", None, None, {})
    with pytest.raises(UserError, match="Data page"):
        draft_config(ws, "run-1", "m", "", None, None, {})
    with pytest.raises(UserError, match="author needs a name"):
        draft_config(ws, "run-1", "m", "d.jsonl", "", "Acme", {})
