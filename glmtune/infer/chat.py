"""``glmtune chat``: an interactive, streaming, multi-turn REPL on a model (and optional adapter)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import torch

from glmtune.infer.runaway import DEFAULT_LOOP_RULE, LoopRule, LoopStoppingCriteria
from glmtune.layout import get_layout
from glmtune.models import load_model, load_tokenizer_for

HELP = "commands: /reset (forget the conversation), /system TEXT (set a system prompt), /save FILE, /exit"


def stream_reply(model: Any, tokenizer: Any, layout: Any, messages: list[dict[str, Any]], max_new_tokens: int,
                 write: Any, loop_rule: LoopRule | None = DEFAULT_LOOP_RULE) -> tuple[str, str]:
    """Generate greedily, writing text pieces as they come; return (reply text, finish reason)."""
    from transformers import StoppingCriteriaList, TextIteratorStreamer

    ids = torch.tensor([layout.prompt_ids(messages)], device=next(model.parameters()).device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    result: dict[str, Any] = {}
    kwargs: dict[str, Any] = {}
    if loop_rule is not None:
        kwargs["stopping_criteria"] = StoppingCriteriaList([LoopStoppingCriteria(ids.shape[1], loop_rule)])

    def work() -> None:
        result["out"] = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                       max_new_tokens=max_new_tokens, eos_token_id=layout.stop_ids,
                                       pad_token_id=tokenizer.pad_token_id, streamer=streamer, **kwargs)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    pieces = []
    for piece in streamer:
        pieces.append(piece)
        write(piece)
    thread.join()
    new = result["out"][0, ids.shape[1]:].tolist()
    stopped = any(t in layout.stop_ids for t in new)
    return "".join(pieces).strip(), "stop" if stopped else "length"


def chat_loop(model_path: str, adapter: str | None = None, max_new_tokens: int = 256,
              read: Any = input, say: Any = print, write: Any = None) -> list[dict[str, Any]]:
    """Run the REPL until /exit or end of input; return the final conversation."""
    tokenizer = load_tokenizer_for(model_path, adapter)
    layout = get_layout(tokenizer)
    model = load_model(model_path, adapter=adapter)
    write = write or (lambda text: print(text, end="", flush=True))
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
        if text.startswith("/save"):
            target = text[len("/save"):].strip()
            if not target:
                say("usage: /save FILE")
                continue
            messages = ([{"role": "system", "content": system}] if system else []) + history
            Path(target).write_text(json.dumps({"messages": messages}, ensure_ascii=False) + "\n", encoding="utf-8")
            say(f"(saved {len(messages)} messages to {target} as GLM-4 JSONL)")
            continue
        history.append({"role": "user", "content": text})
        prompt = ([{"role": "system", "content": system}] if system else []) + history
        write("assistant> ")
        reply, finish = stream_reply(model, tokenizer, layout, prompt, max_new_tokens, write)
        write("  [cut at max tokens]\n" if finish == "length" else "\n")
        history.append({"role": "assistant", "content": reply})
