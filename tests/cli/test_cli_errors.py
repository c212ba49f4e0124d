"""Every user mistake the CLI can meet: one row each of (command, bad input, exit code, words the message must hold).

Rows run in-process through ``glmtune.cli.main.main``. Every row also asserts that no traceback and no pydantic
internals (``constrained-int``, ``literal[...]``) reach the user. Exit codes: 0 clean, 1 problems found and
handled (quarantined or repaired), 2 the user must act.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from glmtune.cli.main import main

GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def line(messages: list[tuple[str, str]]) -> str:
    """One GLM-4 JSONL line from (role, content) pairs."""
    return json.dumps({"messages": [{"role": r, "content": c} for r, c in messages]}, ensure_ascii=False)


@dataclass
class World:
    """Files the rows point at."""

    root: Path
    model: Path
    adapter: Path
    blocker: Path  # a regular file: any path under it cannot be created (read-only even for root)

    def __call__(self, name: str) -> str:
        return str(self.root / name)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> World:
    """Bad and good inputs, written once for the module."""
    root = tmp_path_factory.mktemp("cli-errors")
    good = json.dumps(GOOD)
    files = {
        "good.jsonl": good + "\n",
        "assistant_first.jsonl": line([("assistant", "Hello!"), ("user", "hi"), ("assistant", "hey")]) + "\n" + good,
        "no_user.jsonl": good + "\n" + line([("system", "be kind"), ("assistant", "Hello!")]) + "\n",
        "roles_only_bad.jsonl": line([("assistant", "Hello!"), ("user", "hi")]) + "\n",
        "warnings_only.jsonl": good + "\n" + line([("user", "hi"), ("assistant", "howdy")]) + "\n",
        "empty.jsonl": "",
        "empty.json": "",
        "all_bad.jsonl": "{not json\n[1, 2\n",
        "long.jsonl": line([("user", "first question")] + [("assistant", "a short answer"), ("user", "and then?")] * 100
                           + [("assistant", "the final reply")]) + "\n",
        "preds.jsonl": json.dumps({"prediction": "hi", "reference": "hi"}) + "\n",
        "blocker.txt": "a regular file, not a folder\n",
    }
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    # GBK bytes that happen to be valid UTF-8 ("小猫" reads "Сè", "猫" reads "è"), beside a GBK line that is not
    gbk = [line([("user", "小猫"), ("assistant", "写")]), line([("user", "猫"), ("assistant", "cat")]),
           line([("user", "你好，世界"), ("assistant", "你好！")]), good]
    (root / "gbk.jsonl").write_bytes(b"\n".join(t.encode("gbk") for t in gbk) + b"\n")
    (root / "busy").mkdir()
    (root / "busy" / "keep.txt").write_text("keep me")
    (root / "train.yaml").write_text(
        f"model: {{name_or_path: {tiny_model}}}\ndata: {{train_file: {root / 'good.jsonl'}}}\n"
        f"training: {{output_dir: {root / 'run'}}}\n")
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                                LoraConfig(task_type="CAUSAL_LM", r=2, target_modules=["q_proj"]))
    peft_model.save_pretrained(root / "adapter")
    return World(root, tiny_model, root / "adapter", root / "blocker.txt")


# (id, argv built from the world, expected exit code, substrings the output must contain)
ROWS = [
    # exit codes of data check: 0 clean (warnings alone), 1 handled, 2 the user must act
    ("check-clean", lambda w: ["data", "check", w("good.jsonl")], 0, ["clean"]),
    ("check-warnings-only", lambda w: ["data", "check", w("warnings_only.jsonl")], 0,
     ["warning(s) only", "conflicting_answer"]),
    ("check-empty-jsonl", lambda w: ["data", "check", w("empty.jsonl")], 2, ["empty.jsonl", "no records"]),
    ("check-empty-json", lambda w: ["data", "check", w("empty.json")], 2, ["empty.json", "empty"]),
    ("check-nothing-usable", lambda w: ["data", "check", w("all_bad.jsonl")], 2,
     ["nothing usable", "all_bad.jsonl:1", "malformed_json"]),
    # role order
    ("check-assistant-first", lambda w: ["data", "check", w("assistant_first.jsonl")], 1,
     ["assistant_first.jsonl:1", "assistant_first", "must start with a user turn"]),
    ("check-no-user-turn", lambda w: ["data", "check", w("no_user.jsonl")], 1, ["no_user.jsonl:2", "no_user_turn"]),
    ("predict-assistant-first", lambda w: ["predict", "--model", str(w.model), "--data", w("roles_only_bad.jsonl"),
                                           "--out", w("p.jsonl")], 2,
     ["roles_only_bad.jsonl:1", "assistant_first", "no usable conversation"]),
    # mojibake: GBK bytes that are valid UTF-8, named per line
    ("check-gbk-mojibake", lambda w: ["data", "check", w("gbk.jsonl")], 1,
     ["gbk.jsonl:1: [mojibake]", "'小猫 … 写'", "gbk.jsonl:2: [mojibake]", "'猫'", "gbk.jsonl:3: [bad_encoding]",
      "read as GBK"]),
    # --max-length says what the default truncation does
    ("check-max-length-keep-recent", lambda w: ["data", "check", w("long.jsonl"), "--model", str(w.model),
                                                "--max-length", "64"], 0,
     ["long.jsonl:1", "truncation 'keep_recent'", "trained tokens of the reply are kept"]),
    # make-tiny and export both refuse a non-empty folder unless --overwrite
    ("make-tiny-non-empty", lambda w: ["make-tiny", "--out", w("busy")], 2, ["busy", "not empty", "--overwrite"]),
    ("export-non-empty", lambda w: ["export", "--model", str(w.model), "--adapter", str(w.adapter), "--out",
                                    w("busy")], 2, ["busy", "not empty", "--overwrite"]),
    # missing local paths fail fast and are never looked up on the hub; hub ids fail fast offline
    ("predict-missing-local-model", lambda w: ["predict", "--model", "./no/such/model", "--data", w("good.jsonl"),
                                               "--out", w("p.jsonl")], 2, ["model folder not found: ./no/such/model"]),
    ("tokenize-missing-nested-model", lambda w: ["data", "tokenize", "--model", "no/such/model", "--data",
                                                 w("good.jsonl"), "--out", w("t.jsonl")], 2, ["no/such/model"]),
    ("export-missing-adapter", lambda w: ["export", "--model", str(w.model), "--adapter", w("no_adapter"), "--out",
                                          w("exp")], 2, ["adapter folder not found", "no_adapter"]),
    ("predict-hub-id-offline", lambda w: ["predict", "--model", "nobody-glmtune/not-cached", "--data",
                                          w("good.jsonl"), "--out", w("p.jsonl")], 2,
     ["nobody-glmtune/not-cached", "HF_HUB_OFFLINE"]),
    # config values in words, naming the key
    ("config-r-zero", lambda w: ["train", w("train.yaml"), "peft.lora.r=0"], 2,
     ["peft.lora.r: must be a whole number >= 1 or 'auto' (got 0)"]),
    ("config-lr-negative", lambda w: ["plan", w("train.yaml"), "training.learning_rate=-1"], 2,
     ["training.learning_rate: must be a number > 0 or 'auto' (got -1)"]),
    ("config-attn-unknown", lambda w: ["plan", w("train.yaml"), "model.attn_implementation=xformers"], 2,
     ["model.attn_implementation: must be one of 'sdpa', 'eager' or 'flash_attention_2' (got 'xformers')"]),
    ("config-weight-zero", lambda w: ["plan", w("train.yaml"), f"data.train_file=[{{path: {w('good.jsonl')}, "
                                      "weight: 0}]"], 2, ["data.train_file[0].weight: must be a number > 0 (got 0)"]),
    # every command that writes: an output location that cannot be created is an error naming it
    ("train-output-unwritable", lambda w: ["train", w("train.yaml"), f"training.output_dir={w.blocker}/run"], 2,
     ["{blocker}/run", "is a file, not a folder"]),
    ("check-fix-unwritable", lambda w: ["data", "check", w("good.jsonl"), "--fix", f"{w.blocker}/sub/fixed.jsonl"], 2,
     ["{blocker}/sub/fixed.jsonl"]),
    ("check-report-unwritable", lambda w: ["data", "check", w("good.jsonl"), "--report", f"{w.blocker}/r.json"], 2,
     ["{blocker}/r.json"]),
    ("tokenize-out-unwritable", lambda w: ["data", "tokenize", "--model", str(w.model), "--data", w("good.jsonl"),
                                           "--out", f"{w.blocker}/sub/t.jsonl"], 2, ["{blocker}/sub/t.jsonl"]),
    ("export-out-unwritable", lambda w: ["export", "--model", str(w.model), "--adapter", str(w.adapter), "--out",
                                         f"{w.blocker}/sub"], 2, ["{blocker}/sub"]),
    ("eval-out-unwritable", lambda w: ["eval", "--predictions", w("preds.jsonl"), "--out", f"{w.blocker}/sub"], 2,
     ["{blocker}/sub"]),
    ("make-tiny-out-unwritable", lambda w: ["make-tiny", "--out", f"{w.blocker}/sub"], 2, ["{blocker}/sub"]),
    ("predict-out-unwritable", lambda w: ["predict", "--model", str(w.model), "--data", w("good.jsonl"), "--out",
                                          f"{w.blocker}/p.jsonl"], 2, ["{blocker}/p.jsonl"]),
    # argument checks owned by predict and serve
    ("predict-max-new-tokens-zero", lambda w: ["predict", "--model", str(w.model), "--data", w("good.jsonl"), "--out",
                                               w("p.jsonl"), "--max-new-tokens", "0"], 2, ["--max-new-tokens", "0"]),
    ("predict-batch-size-zero", lambda w: ["predict", "--model", str(w.model), "--data", w("good.jsonl"), "--out",
                                           w("p.jsonl"), "--batch-size", "0"], 2, ["--batch-size", "0"]),
    ("serve-port-out-of-range", lambda w: ["serve", "--model", str(w.model), "--port", "99999"], 2, ["99999"]),
    ("chat-max-new-tokens-zero", lambda w: ["chat", "--model", str(w.model), "--max-new-tokens", "0"], 2,
     ["--max-new-tokens", "0"]),
    ("eval-batch-size-zero", lambda w: ["eval", "--model", str(w.model), "--data", w("good.jsonl"),
                                        "--batch-size", "0"], 2, ["--batch-size", "0"]),
]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and stdout + stderr of ``glmtune ARGV`` run in this process."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize(("argv", "code", "expected"), [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_cli_error_table(world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                         argv, code: int, expected: list[str]) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    got, output = run_cli(argv(world), capsys)
    assert got == code, output
    for text in (e.format(blocker=world.blocker) for e in expected):
        assert text in output, f"{text!r} not in:\n{output}"
    for leak in ("Traceback", "constrained-", "literal["):
        assert leak not in output
    assert time.monotonic() - start < 30  # fail fast: no hub retries


def test_make_tiny_overwrite_replaces_a_non_empty_folder(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    folder = world.root / "tiny-again"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"stale weights")
    (folder / "notes.txt").write_text("mine")
    assert run_cli(["make-tiny", "--out", str(folder)], capsys)[0] == 2
    assert (folder / "model.safetensors").read_bytes() == b"stale weights"  # refused: nothing touched
    code, output = run_cli(["make-tiny", "--out", str(folder), "--overwrite"], capsys)
    assert code == 0, output
    assert (folder / "model.safetensors").read_bytes() != b"stale weights"
    assert (folder / "notes.txt").read_text() == "mine"  # only weight files are replaced


def test_read_only_folder_is_an_error_not_a_traceback(world: World, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder that exists but cannot be written (root ignores chmod, so access() is mocked for it)."""
    import glmtune.data.outputs as outputs

    locked = world.root / "locked"
    locked.mkdir(exist_ok=True)
    real = outputs.os.access
    monkeypatch.setattr(outputs.os, "access", lambda p, mode: Path(p) != locked and real(p, mode))
    code, output = run_cli(["data", "check", world("good.jsonl"), "--fix", str(locked / "fixed.jsonl")], capsys)
    assert code == 2 and f"{locked}/fixed.jsonl" in output and "read-only" in output
    assert not (locked / "fixed.jsonl").exists()


def test_a_write_that_fails_late_is_an_error(world: World, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """PermissionError while writing (after the early check passed) still ends as ``error: ...``, exit 2."""
    import glmtune.data.check as check

    target = world.root / "late" / "fixed.jsonl"

    def refuse(path: str | Path, encoding: str = "utf-8"):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(check, "atomic_write", refuse)
    code, output = run_cli(["data", "check", world("good.jsonl"), "--fix", str(target)], capsys)
    assert code == 2 and f"error: cannot access {target}: Permission denied" in output
    assert "Traceback" not in output


def test_tokenize_out_is_written_atomically(world: World, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill mid-write leaves the previous file and no partial one; a finished write replaces it whole."""
    import glmtune.cli.commands as commands

    out = world.root / "tok" / "samples.jsonl"
    out.parent.mkdir(exist_ok=True)
    out.write_text("previous complete file\n")
    argv = ["data", "tokenize", "--model", str(world.model), "--data", world("warnings_only.jsonl"), "--out", str(out),
            "--no-cache"]
    real_dumps = json.dumps
    calls = {"n": 0}

    def dumps_then_die(obj, *args, **kwargs):
        if isinstance(obj, dict) and "input_ids" in obj:
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt  # the kill, after one row was written
        return real_dumps(obj, *args, **kwargs)

    monkeypatch.setattr(commands.json, "dumps", dumps_then_die)
    assert run_cli(argv, capsys)[0] == 130
    assert calls["n"] == 2
    assert out.read_text() == "previous complete file\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["samples.jsonl"]  # no temporary file left behind
    monkeypatch.setattr(commands.json, "dumps", real_dumps)
    code, output = run_cli(argv, capsys)
    assert code == 0, output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 2 and all(set(r) == {"input_ids", "labels"} for r in rows)
