"""The chat REPL: streaming, multi-turn history, /reset, /system and /save."""

from __future__ import annotations

import json

from glmtune.infer.chat import chat_loop


def test_chat_commands_and_history(tmp_path, tiny_model):
    save = tmp_path / "chat.jsonl"
    inputs = iter(["hello", "/system You are Nova.", "who are you?", "again", f"/save {save}", "/reset",
                   "fresh", "/exit"])
    said, written = [], []
    history = chat_loop(str(tiny_model), max_new_tokens=6, read=lambda _: next(inputs), say=said.append,
                        write=written.append)
    saved = json.loads(save.read_text())["messages"]
    assert [m["role"] for m in saved] == ["system", "user", "assistant", "user", "assistant"]
    assert saved[0]["content"] == "You are Nova." and saved[1]["content"] == "who are you?"
    assert [m["content"] for m in history if m["role"] == "user"] == ["fresh"]
    assert written.count("assistant> ") == 4
    assert any("saved 5 messages" in line for line in said)
