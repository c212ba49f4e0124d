"""``glmtune chat``: an interactive multi-turn REPL on a model (and optional adapter)."""

from __future__ import annotations

from typing import Any

from glmtune.infer.generate import generate_replies
from glmtune.layout import get_layout
from glmtune.models import load_model, load_tokenizer_for

HELP = "commands: /reset (forget the conversation), /system TEXT (set a system prompt), /exit"


def chat_loop(model_path: str, adapter: str | None = None, max_new_tokens: int = 256,
              read: Any = input, say: Any = print) -> list[dict[str, Any]]:
    """Run the REPL until /exit or end of input; return the final conversation."""
    tokenizer = load_tokenizer_for(model_path, adapter)
    layout = get_layout(tokenizer)
    model = load_model(model_path, adapter=adapter)
    history: list[dict[str, Any]] = []
    system: str | None = None
    say(HELP)
    while True:
        try:
            line = read("you> ")
        except (EOFError, KeyboardInterrupt):
            say("")
            return history
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return history
        if text == "/reset":
            history = []
            say("(conversation cleared)")
            continue
        if text.startswith("/system"):
            system = text[len("/system"):].strip() or None
            history = []
            say(f"(system prompt {'set' if system else 'cleared'}; conversation cleared)")
            continue
        history.append({"role": "user", "content": text})
        prompt = ([{"role": "system", "content": system}] if system else []) + history
        gen = generate_replies(model, tokenizer, layout, [prompt], max_new_tokens=max_new_tokens)[0]
        history.append({"role": "assistant", "content": gen.text})
        say(f"assistant> {gen.text}" + ("  [cut at max tokens]" if gen.finish_reason == "length" else ""))
