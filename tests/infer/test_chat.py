"""The chat REPL: streaming, multi-turn history, commands, /save, loop notes and Ctrl-C during a reply."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from glmtune.infer import chat
from glmtune.infer.chat import chat_loop, stream_reply
from glmtune.layout import get_layout
from tests.tiny.test_tiny_and_generate import forced_model


def run_chat(model: Path, lines: list[str], **kwargs) -> tuple[list[dict], list[str], list[str]]:
    """Run ``chat_loop`` on scripted input; return (history, said lines, written pieces)."""
    inputs, said, written = iter(lines), [], []
    history = chat_loop(str(model), read=lambda _: next(inputs), say=said.append, write=written.append, **kwargs)
    return history, said, written


def test_chat_commands_and_history(tmp_path, tiny_model):
    save = tmp_path / "chat.jsonl"
    history, said, written = run_chat(tiny_model, ["hello", "/system You are Nova.", "who are you?", "again",
                                                   f"/save {save}", "/reset", "fresh", "/exit"], max_new_tokens=6)
    saved = json.loads(save.read_text())["messages"]
    assert [m["role"] for m in saved] == ["system", "user", "assistant", "user", "assistant"]
    assert saved[0]["content"] == "You are Nova." and saved[1]["content"] == "who are you?"
    assert [m["content"] for m in history if m["role"] == "user"] == ["fresh"]
    assert written.count("assistant> ") == 4
    assert any("saved 5 messages" in line for line in said)


def test_unknown_command_is_not_sent_to_the_model(tiny_model):
    history, said, written = run_chat(tiny_model, ["/bogus thing", "/systemx", "//etc/hosts?", "/exit"],
                                      max_new_tokens=4)
    unknown = [line for line in said if line.startswith("unknown command")]
    assert len(unknown) == 2 and "/bogus" in unknown[0] and "/systemx" in unknown[1]
    assert all(c in unknown[0] for c in ("/reset", "/system", "/save", "/exit"))
    assert written.count("assistant> ") == 1  # only the // line went to the model, without its escape
    assert [m["content"] for m in history if m["role"] == "user"] == ["/etc/hosts?"]


def test_save_creates_folders_and_a_failed_save_keeps_the_conversation(tmp_path, tiny_model):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    nested = tmp_path / "new" / "deeper" / "chat.jsonl"
    history, said, _ = run_chat(tiny_model, ["hello", f"/save {blocker}/sub/chat.jsonl", f"/save {nested}", "/exit"],
                                max_new_tokens=4)
    failed = [line for line in said if line.startswith("error: cannot save")]
    assert len(failed) == 1 and str(blocker) in failed[0] and "kept" in failed[0]
    assert [m["role"] for m in json.loads(nested.read_text())["messages"]] == ["user", "assistant"]
    assert len(history) == 2


def test_a_loop_cut_is_called_a_loop(monkeypatch, tiny_model, tiny_tokenizer):
    word = tiny_tokenizer("hello")["input_ids"][0]
    monkeypatch.setattr(chat, "load_model", lambda *a, **k: forced_model(tiny_model, word))
    history, _, written = run_chat(tiny_model, ["hi", "/exit"], max_new_tokens=64)
    assert written[-1] == chat.END_NOTES["loop"] and "loop" in written[-1]
    assert "[cut at max tokens]" not in "".join(written)
    assert history[-1]["role"] == "assistant" and history[-1]["content"]
    _, _, written = run_chat(tiny_model, ["hi", "/exit"], max_new_tokens=8)  # too short to loop: max tokens
    assert written[-1] == chat.END_NOTES["length"]


def test_interrupt_inside_stream_reply_stops_the_reply(tiny_model, tiny_tokenizer):
    model = forced_model(tiny_model, tiny_tokenizer("hello")["input_ids"][0])
    pieces: list[str] = []
    before = set(threading.enumerate())

    def write(piece: str) -> None:
        pieces.append(piece)
        if len(pieces) == 2:
            raise KeyboardInterrupt

    reply = stream_reply(model, tiny_tokenizer, get_layout(tiny_tokenizer), [{"role": "user", "content": "hi"}],
                         max_new_tokens=10_000, write=write, loop_rule=None)
    assert reply.finish == "interrupted" and reply.text
    started = [t for t in threading.enumerate() if t not in before]
    assert not started, started  # the generation thread has ended (other tests' threads may come and go)
    assert len(tiny_tokenizer(reply.text, add_special_tokens=False)["input_ids"]) < 10_000


def endless_model(tiny_model: Path, folder: Path) -> Path:
    """The tiny model with its stop ids suppressed and no repeated bigrams: replies run to max tokens."""
    shutil.copytree(tiny_model, folder)
    config = json.loads((folder / "generation_config.json").read_text())
    config.update(suppress_tokens=config["eos_token_id"], no_repeat_ngram_size=2)
    (folder / "generation_config.json").write_text(json.dumps(config))
    return folder


class Console:
    """A ``glmtune chat`` subprocess with piped stdin/stdout and a reader thread."""

    def __init__(self, args: list[str]) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "glmtune", "chat", *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.out = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while piece := self.proc.stdout.read(1):
            self.out += piece

    def wait_for(self, text: str, count: int = 1, after: int = 0, timeout: float = 120) -> None:
        """Wait until ``text`` was printed ``count`` times, followed by ``after`` more characters."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            at = -1
            for _ in range(count):
                at = self.out.find(text, at + 1)
                if at < 0:
                    break
            if at >= 0 and len(self.out) >= at + len(text) + after:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} x{count} not printed; output so far:\n{self.out}")

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()


@pytest.mark.slow
def test_ctrl_c_during_a_reply_keeps_the_session(tmp_path, tiny_model):
    model = endless_model(tiny_model, tmp_path / "endless")
    saved = tmp_path / "not" / "yet" / "there.jsonl"
    console = Console(["--model", str(model), "--max-new-tokens", "20000"])
    try:
        for turn, line in enumerate(["hello", "and again"], start=1):
            console.send(line)
            console.wait_for("assistant> ", count=turn, after=20)
            console.proc.send_signal(signal.SIGINT)
            console.wait_for("[stopped by Ctrl-C]", count=turn)
        console.send("/bogus")
        console.wait_for("unknown command /bogus")
        console.send(f"/save {saved}")
        console.wait_for("(saved 4 messages")
        console.proc.stdin.close()  # end of input ends the session
        code = console.proc.wait(timeout=60)
    finally:
        if console.proc.poll() is None:
            console.proc.kill()
    stderr = console.proc.stderr.read()
    assert code == 0, stderr
    assert "terminate called" not in stderr and "Traceback" not in stderr
    messages = json.loads(saved.read_text())["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"] * 2
    assert all(m["content"] for m in messages)
