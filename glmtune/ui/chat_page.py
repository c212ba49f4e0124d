"""Chat page: the base model and a fine-tuned run or checkpoint answer side by side, streamed, multi-turn.

Replies come from ``glmtune.infer.chat.stream_reply``, as in ``glmtune chat``. One PEFT model is loaded per
adapter; the base answers with the adapter disabled (as the retention check does), so the weights are in
memory once.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from glmtune.errors import UserError
from glmtune.ui.runs import base_model_of
from glmtune.ui.workspace import command

Message = dict[str, str]
FINISH_NOTES = {"length": " [cut at max tokens]", "loop": " [cut by the repetition guard: a loop]"}


@dataclass
class Loaded:
    """A model (a PEFT model when there is an adapter) and the tokenizer and layout of each side."""

    key: tuple[str, str | None]
    model: Any
    base: tuple[Any, Any]  # tokenizer, layout
    tuned: tuple[Any, Any] | None


class ChatModels:
    """The loaded model of the latest (base, adapter) pair, kept between messages."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loaded: Loaded | None = None

    def get(self, model: str, adapter: str | None) -> Loaded:
        """The loaded pair, loading it (and dropping the previous one) when it changed."""
        from glmtune.layout import get_layout
        from glmtune.models import load_model, load_tokenizer, load_tokenizer_for

        key = (model, adapter)
        with self.lock:
            if self.loaded is None or self.loaded.key != key:
                self.loaded = None
                base_tok = load_tokenizer(model)
                tuned = None
                if adapter:
                    tok = load_tokenizer_for(model, adapter)
                    tuned = (tok, get_layout(tok))
                self.loaded = Loaded(key, load_model(model, adapter=adapter), (base_tok, get_layout(base_tok)), tuned)
            return self.loaded


def resolve_models(adapter: str | None, model: str | None) -> tuple[str, str | None]:
    """(base model, adapter or None) for the page's choices."""
    adapter = (adapter or "").strip() or None
    base = (base_model_of(adapter) if adapter else None) or (model or "").strip()
    if not base:
        raise UserError("choose a model on the Model page, or a finished run or checkpoint here")
    return base, adapter


def chat_command(base: str, adapter: str | None, max_new_tokens: int) -> str:
    """The ``glmtune chat`` command of the tuned side (the base side: the same without --adapter)."""
    return command("chat", "--model", base, *(["--adapter", adapter] if adapter else []),
                   "--max-new-tokens", str(int(max_new_tokens)))


def _stream(model: Any, tok_layout: tuple[Any, Any], messages: list[Message], max_new_tokens: int,
            base: bool) -> Iterator[str | tuple[str, Any]]:
    """Pieces of one streamed reply, then ("done", Reply) (or ("error", message))."""
    from glmtune.infer.chat import stream_reply

    pieces: queue.Queue = queue.Queue()

    def work() -> None:
        try:
            if base and hasattr(model, "disable_adapter"):
                with model.disable_adapter():
                    reply = stream_reply(model, *tok_layout, messages, max_new_tokens, pieces.put)
            else:
                reply = stream_reply(model, *tok_layout, messages, max_new_tokens, pieces.put)
            pieces.put(("done", reply))
        except Exception as exc:  # shown on the page, the conversation kept
            pieces.put(("error", f"{exc.__class__.__name__}: {exc}"))

    threading.Thread(target=work, daemon=True).start()
    while True:
        item = pieces.get()
        yield item
        if isinstance(item, tuple):
            return


def shown_history(history: list[Message]) -> list[Message]:
    """A conversation for a chat box: each reply with its note (cut at max tokens, loop) appended."""
    return [{"role": m["role"], "content": m["content"] + m.get("note", "")} for m in history]


def model_messages(system: str | None, history: list[Message]) -> list[Message]:
    """What the model reads: the system prompt, then the turns without the page's notes."""
    head = [{"role": "system", "content": system.strip()}] if system and system.strip() else []
    return head + [{"role": m["role"], "content": m["content"]} for m in history]


def chat_turn(models: ChatModels, base: str, adapter: str | None, system: str | None, text: str,
              histories: tuple[list[Message], list[Message]], max_new_tokens: int = 128
              ) -> Iterator[tuple[list[Message], list[Message], str]]:
    """Send ``text`` to the base, then to the tuned model; yield both conversations as the replies stream."""
    if not (text or "").strip():
        raise UserError("type a message first")
    loaded = models.get(base, adapter)
    sides = [list(histories[0]), list(histories[1])]
    plan = [(0, loaded.base, True)] + ([(1, loaded.tuned, False)] if loaded.tuned else [])
    problems = ""
    for side, tok_layout, is_base in plan:
        prompt = model_messages(system, sides[side] + [{"role": "user", "content": text}])
        sides[side] += [{"role": "user", "content": text}, {"role": "assistant", "content": ""}]
        for item in _stream(loaded.model, tok_layout, prompt, max_new_tokens, is_base):
            reply = sides[side][-1]
            if isinstance(item, str):
                reply["content"] += item
            elif item[0] == "done":
                reply["content"], reply["note"] = item[1].text, FINISH_NOTES.get(item[1].finish, "")
            else:
                problems += f"{'base' if is_base else 'tuned'} model: {item[1]}. "
                reply["note"] = " [no reply: error]"
            yield sides[0], sides[1], problems
    yield sides[0], sides[1], problems or "replies done"
