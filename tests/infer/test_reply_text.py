"""Replies as text: the family's markup tags kept in decoding, reasoning split off the answer, in predict and chat."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from glmtune.infer.reply_text import (
    ReplyDecoder,
    kept_special_ids,
    partial_reasoning,
    reasoning_mode,
    split_reasoning,
)
from glmtune.layout import get_layout
from tests.infer.scripted import Forced


@pytest.mark.parametrize(("text", "mode", "expected"), [
    ("\n<think>Let me see.\n</think>\n\nIt is 4.", "tagged", ("Let me see.", "It is 4.")),
    ("\n<think></think>\nIt is 4.", "tagged", ("", "It is 4.")),
    ("\nIt is 4.", "tagged", ("", "It is 4.")),  # enable_thinking=False: no think block
    ("<think>still going", "tagged", ("still going", "")),  # cut inside the reasoning
    ("Let me see.</think>\nIt is 4.", "open", ("Let me see.", "It is 4.")),  # GLM-Z1: the prompt opened <think>
    ("still going", "open", ("still going", "")),
    ("a</think>b", None, ("", "a</think>b")),  # a template without thinking: nothing is split
    ("<think>r</think>\nanswer", "any", ("r", "answer")),  # a predictions file: any inline block
    ("r</think>\nanswer", "any", ("r", "answer")),
    (" plain ", "any", ("", "plain")),
])
def test_split_reasoning(text: str, mode: str | None, expected: tuple[str, str]) -> None:
    assert split_reasoning(text, mode) == expected  # type: ignore[arg-type]


def test_partial_reasoning_waits_for_the_think_block_to_close() -> None:
    assert partial_reasoning("", "tagged") == ("", None)  # a think block may still start
    assert partial_reasoning("\n<thi", "tagged") == ("", None)
    assert partial_reasoning("\n<think>abc", "tagged") == ("abc", None)
    assert partial_reasoning("\n<think>abc</think>\n\nAns", "tagged") == ("abc", "Ans")
    assert partial_reasoning("\nAns", "tagged") == ("", "\nAns")  # no think block: the answer as written
    assert partial_reasoning("abc", "open") == ("abc", None)


def test_glm45_tags_survive_decoding_and_role_tokens_do_not(tiny_family: Callable[[str], Path]) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_family("glm4-moe"))
    layout = get_layout(tok)
    keep = kept_special_ids(layout, tok)
    assert set(tok.convert_ids_to_tokens(sorted(keep))) == {
        "<think>", "</think>", "<tool_call>", "</tool_call>", "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>"}
    text = "\n<think>r</think>\n<tool_call>f\n<arg_key>k</arg_key>\n<arg_value>v</arg_value>\n</tool_call>"
    ids = tok(text + "<|assistant|><|user|>", add_special_tokens=False)["input_ids"]
    assert ReplyDecoder(tok, keep).decode(ids) == text
    assert ReplyDecoder(tok).decode(ids) == tok.decode(ids, skip_special_tokens=True)  # nothing kept: as before
    assert reasoning_mode(layout) == "tagged"


def test_generate_splits_reasoning_per_family(tiny_family: Callable[[str], Path]) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from glmtune.infer.generate import generate_replies

    for family, script in (("glm4-moe", "\n<think>Greeting.</think>\nHello!<|user|>"),
                           ("glm-z1", "Greeting.</think>\nHello!<|user|>"),
                           ("glm4", "\n<think>Greeting.</think>\nHello!<|user|>")):
        tok = AutoTokenizer.from_pretrained(tiny_family(family))
        model = Forced(AutoModelForCausalLM.from_pretrained(tiny_family(family)), tok, [script])
        (gen,) = generate_replies(model, tok, get_layout(tok), [[{"role": "user", "content": "hi"}]], 40)
        if family == "glm4":  # no thinking in the template: the reply is kept whole
            assert (gen.reasoning, gen.text) == ("", "<think>Greeting.</think>\nHello!")
        else:
            assert (gen.reasoning, gen.text, gen.stop_token) == ("Greeting.", "Hello!", "<|user|>")


def test_chat_folds_the_reasoning_and_keeps_it_in_the_history(monkeypatch: pytest.MonkeyPatch,
                                                              tiny_family: Callable[[str], Path]) -> None:
    from glmtune.infer import chat

    path = tiny_family("glm4-moe")
    real_load = chat.load_model
    scripts = ["\n<think>A greeting.</think>\nHello there!<|user|>", "\n<think>Again.</think>\nHi again.<|user|>"]
    forced: list[Forced] = []
    monkeypatch.setattr(chat, "load_model", lambda *a, **k: forced.append(
        Forced(real_load(*a, **k), chat.load_tokenizer_for(str(path), None), scripts)) or forced[0])
    lines, said, written = iter(["hi", "/think", "again", "/exit"]), [], []
    history = chat.chat_loop(str(path), read=lambda _: next(lines), say=said.append, write=written.append,
                             max_new_tokens=40)
    assert history[1] == {"role": "assistant", "content": "Hello there!", "reasoning_content": "A greeting."}
    out = "".join(written)
    assert "[thinking: 11 chars — /think to show]\nHello there!" in out and "A greeting." not in out
    assert "A greeting." in said  # /think shows it
    assert forced[0].prompts[1].endswith("<|assistant|>\n<think></think>\nHello there!<|user|>\nagain<|assistant|>")
