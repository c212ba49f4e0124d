"""glmtune.log: module loggers, the rank-0 filter, the CLI's plain handler, and capturing a run's messages."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from glmtune.log import ConsoleHandler, RankZeroFilter, capture, is_main_process, logger, setup_logging

child = logging.getLogger("glmtune.tests.child")  # how modules log: a child of the glmtune logger


@pytest.fixture(autouse=True)
def restore_logger() -> Iterator[None]:
    """Leave the glmtune logger as each test found it (setup_logging changes process-wide state)."""
    saved = logger.handlers[:], logger.level, logger.propagate
    yield
    logger.handlers, logger.propagate = saved[0], saved[2]
    logger.setLevel(saved[1])


def _record(message: str = "hello") -> logging.LogRecord:
    return child.makeRecord(child.name, logging.INFO, __file__, 1, message, None, None)


@pytest.mark.parametrize(("rank", "kept"), [(None, True), ("0", True), ("1", False), ("3", False)])
def test_rank_filter_keeps_records_on_rank_0_only(monkeypatch: pytest.MonkeyPatch, rank: str | None,
                                                  kept: bool) -> None:
    if rank is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank)
    assert is_main_process() is kept
    assert RankZeroFilter().filter(_record()) is kept


def test_console_handler_prints_plain_lines_on_rank_0_and_nothing_on_rank_1(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging()
    monkeypatch.setenv("RANK", "0")
    child.info("layout: glm4")
    child.warning("warning: ignoring torn checkpoint x")
    monkeypatch.setenv("RANK", "1")
    child.info("from rank 1")
    child.warning("warning from rank 1")
    captured = capsys.readouterr()
    assert captured.out == "layout: glm4\nwarning: ignoring torn checkpoint x\n"  # %(message)s, no level names
    assert captured.err == ""


def test_setup_logging_twice_prints_each_message_once(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging()
    setup_logging()
    child.info("once")
    assert capsys.readouterr().out == "once\n"
    assert sum(isinstance(h, ConsoleHandler) for h in logger.handlers) == 1


def test_setup_logging_to_stderr_and_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(stderr=True)
    child.info("aside")
    child.debug("hidden")
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "aside\n")
    setup_logging(verbose=True)
    child.debug("details")
    assert capsys.readouterr().out == "details\n"


def test_capture_collects_the_messages_and_shows_them_nowhere_else(
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    setup_logging()
    before = logger.handlers[:]
    with capture([]) as lines:
        child.info("step 1")
        child.warning("warning: step 2")
    child.info("after")
    assert lines == ["step 1", "warning: step 2"]
    assert capsys.readouterr().out == "after\n"
    assert caplog.messages == ["after"]
    assert logger.handlers == before and logger.propagate


@pytest.mark.parametrize("configure", ["", "from glmtune.log import setup_logging; setup_logging(); setup_logging()"])
def test_a_fresh_process_prints_each_message_once(configure: str) -> None:
    """Without setup_logging a library caller sees warnings once (logging's default) and no info; with it, all."""
    code = (f"import logging, glmtune.train.run_dir; {configure or 'pass'}; "
            "log = logging.getLogger('glmtune.train.run_dir'); log.info('info line'); log.warning('warning line')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    if configure:
        assert (proc.stdout, proc.stderr) == ("info line\nwarning line\n", "")
    else:
        assert (proc.stdout, proc.stderr) == ("", "warning line\n")


@pytest.fixture(scope="module")
def plan_config(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """A config that ``glmtune plan`` can plan on the tiny model."""
    from tests.conftest import write_jsonl

    root = tmp_path_factory.mktemp("plan-cli")
    data = write_jsonl(root / "d.jsonl", [[{"role": "user", "content": f"q{i}"},
                                           {"role": "assistant", "content": f"a{i}"}] for i in range(12)])
    config = root / "train.yaml"
    config.write_text(f"model: {{name_or_path: {tiny_model}}}\ndata: {{train_file: {data}}}\n"
                      f"training: {{output_dir: {root / 'run'}}}\n", encoding="utf-8")
    return config


def test_cli_plan_prints_the_plan_and_its_messages_on_stdout(plan_config: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from glmtune.cli.main import main

    assert main(["plan", str(plan_config)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("layout: ") and "stop ids" in lines[0]
    assert any(line.startswith("layout verified on ") for line in lines)
    assert "plan: " in out and "training.learning_rate" in out
    assert lines[-1].startswith("train confirms three values once the model is loaded")
    assert out.count("train confirms three values") == 1


def test_cli_plan_json_keeps_stdout_for_the_json(plan_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from glmtune.cli.main import main

    assert main(["plan", str(plan_config), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["plan"]
    assert captured.err.startswith("layout: ") and "train confirms three values" in captured.err
