"""The repetition guard's verdicts survive batching: a looping row is never reported as a stop.

A scripted logits processor makes a tiny model emit a fixed token script per prompt through transformers'
own ``generate`` (left padding, KV cache, stopping criteria, padding of finished rows): some rows loop,
some stop on ``<|user|>`` or on ``<|endoftext|>`` (id 0, which is also the pad id), one runs to the limit.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, LogitsProcessor, LogitsProcessorList

from glmtune.infer.generate import finish_row, generate_replies
from glmtune.infer.runaway import LoopRule, LoopStoppingCriteria
from glmtune.layout import get_layout

MAX_NEW = 24


class ScriptedLogits(LogitsProcessor):
    """Force each row to emit the script of its prompt (found by prompt ids), then the pad id."""

    def __init__(self, scripts: dict[tuple[int, ...], list[int]], pad_id: int) -> None:
        self.scripts, self.pad_id = scripts, pad_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        forced = torch.full_like(scores, float("-inf"))
        for row, ids in enumerate(input_ids.tolist()):
            while ids and ids[0] == self.pad_id:  # left padding; every GLM-4 prompt starts with [gMASK]
                ids = ids[1:]
            prompt = next(p for p in self.scripts if tuple(ids[:len(p)]) == p)
            script, step = self.scripts[prompt], len(ids) - len(prompt)
            forced[row, script[step] if step < len(script) else self.pad_id] = 0.0
        return forced


@pytest.fixture(scope="module")
def scripted(tiny_model: Path, tiny_tokenizer: Any) -> tuple[Any, list[list[dict[str, str]]], dict[str, Any]]:
    """The tiny model scripted per prompt; the prompts (of different lengths); token ids used by the scripts."""
    tok, layout = tiny_tokenizer, get_layout(tiny_tokenizer)
    letters = [tok.convert_tokens_to_ids(c) for c in "abcdefghijklmnopqrstuvwxyz"]
    user, eot = tok.convert_tokens_to_ids("<|user|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    assert eot == tok.pad_token_id  # the trap: a padded row looks like a stop on <|endoftext|>
    a, b, c = letters[:3]
    scripts = {
        "loop at once": [a, b, c] * 20,                    # n=3 loop: cut after 18 tokens
        "stop on user please": letters[3:8] + [user],      # a normal stop
        "stop on endoftext, a longer prompt": letters[8:12] + [eot],
        "late loop": letters[:7] + [a, b] * 20,            # 7 tokens, then an n=2 loop: cut after 23
        "run on": letters[:MAX_NEW + 2],                   # no stop, no loop: hits the limit
        "repeats but stops in time, which is not a loop": [a] * 10 + [user],
        "x": [a] * 40,                                     # n=1 loop: cut after 16
    }
    prompts = [[{"role": "user", "content": q}] for q in scripts]
    by_ids = {tuple(layout.prompt_ids(p)): s for p, s in zip(prompts, scripts.values())}
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    model.generate = functools.partial(model.generate, logits_processor=LogitsProcessorList(
        [ScriptedLogits(by_ids, tok.pad_token_id)]))
    return model, prompts, {"user": user, "eot": eot}


def verdicts(model: Any, tok: Any, prompts: list, batch_size: int) -> list[tuple[Any, ...]]:
    """(text, finish_reason, loop, num_tokens, stop_token) per prompt at ``batch_size``."""
    gens = generate_replies(model, tok, get_layout(tok), prompts, max_new_tokens=MAX_NEW, batch_size=batch_size,
                            loop_rule=LoopRule())
    return [(g.text, g.finish_reason, g.loop, g.num_tokens, g.stop_token) for g in gens]


def test_loop_verdicts_are_the_same_at_every_batch_size(scripted, tiny_tokenizer):
    model, prompts, _ = scripted
    one = verdicts(model, tiny_tokenizer, prompts, batch_size=1)
    assert [(r[1], r[2], r[3], r[4]) for r in one] == [
        ("length", True, 18, None),
        ("stop", False, 6, "<|user|>"),
        ("stop", False, 5, "<|endoftext|>"),
        ("length", True, 23, None),
        ("length", False, MAX_NEW, None),
        ("stop", False, 11, "<|user|>"),
        ("length", True, 16, None),
    ]
    for size in (2, 3, len(prompts)):
        assert verdicts(model, tiny_tokenizer, prompts, batch_size=size) == one, size


def test_guard_off_runs_loops_to_the_limit_in_a_batch(scripted, tiny_tokenizer):
    model, prompts, _ = scripted
    gens = generate_replies(model, tiny_tokenizer, get_layout(tiny_tokenizer), prompts, max_new_tokens=MAX_NEW,
                            batch_size=len(prompts), loop_rule=None)
    assert [(g.finish_reason, g.loop, g.num_tokens) for g in gens] == [
        ("length", False, MAX_NEW), ("stop", False, 6), ("stop", False, 5), ("length", False, MAX_NEW),
        ("length", False, MAX_NEW), ("stop", False, 11), ("length", False, MAX_NEW),
    ]


def test_guard_records_where_each_row_was_cut():
    rule = LoopRule(min_repeats=4, min_span=8, max_n=4)
    guard = LoopStoppingCriteria(prompt_length=1, rule=rule)
    rows = [[9] + [5] * 7, [9] + [1, 2, 3, 4, 5, 6, 7]]
    assert guard(torch.tensor(rows), torch.zeros(2, 10)).tolist() == [False, False]
    rows = [r + [t] for r, t in zip(rows, (5, 8))]
    assert guard(torch.tensor(rows), torch.zeros(2, 10)).tolist() == [True, False]
    assert guard.cut_at == {0: 8}
    rows = [r + [t] for r, t in zip(rows, (0, 9))]  # row 0 is padded now and stays cut where it was
    assert guard(torch.tensor(rows), torch.zeros(2, 10)).tolist() == [True, False]
    assert guard.cut_at == {0: 8}


def test_finish_row_tells_a_padded_loop_from_a_stop():
    stops, pad = [0, 7], 0
    assert finish_row([5, 5, 5, 5, 0, 0], stops, pad, loop_cut=4) == ([5, 5, 5, 5], None, True)
    assert finish_row([5, 5, 7, 0, 0, 0], stops, pad, loop_cut=6) == ([5, 5], 7, False)  # stop came first
    assert finish_row([5, 5, 0, 0, 0, 0], stops, pad, loop_cut=None) == ([5, 5], 0, False)
    assert finish_row([5, 6, 5, 6], [7], 0, loop_cut=4) == ([5, 6, 5, 6], None, True)


def test_predict_and_eval_report_loops_at_their_default_batch_size(scripted, tiny_model, tiny_tokenizer, tmp_path,
                                                                   monkeypatch, caplog):
    from glmtune.eval import run as eval_run
    from glmtune.infer import predict
    from tests.conftest import write_jsonl

    model, prompts, _ = scripted
    data = write_jsonl(tmp_path / "data.jsonl", [p + [{"role": "assistant", "content": "ref"}] for p in prompts])
    monkeypatch.setattr(predict, "load_model", lambda *a, **k: model)
    caplog.set_level(logging.INFO, logger="glmtune")
    # default batch size: every prompt in one batch
    rows = predict.predict_file(str(tiny_model), str(data), str(tmp_path / "p.jsonl"), max_new_tokens=MAX_NEW)
    one = verdicts(model, tiny_tokenizer, prompts, batch_size=1)
    assert [(r["prediction"], r["finish_reason"], r["loop"], r["num_tokens"], r["stop_token"]) for r in rows] == one
    said = [r.getMessage() for r in caplog.records if r.name == "glmtune.infer.predict"]
    assert "(3 stopped, 1 hit max tokens, 3 cut as loops by the repetition guard)" in said[-1]

    loaded = (tiny_tokenizer, get_layout(tiny_tokenizer), model)
    eval_rows, _ = eval_run._generate_rows(loaded, str(data), MAX_NEW, 16)
    assert [(r["prediction"], r["finish_reason"]) for r in eval_rows] == [(v[0], v[1]) for v in one]
    degeneration = eval_run.score_predictions(eval_rows)["degeneration"]
    shares = degeneration["finish_reason"]
    assert shares["stop"] == pytest.approx(3 / 7) and shares["length"] == pytest.approx(4 / 7)


@pytest.mark.parametrize("flag", ["--max-new-tokens", "--batch-size"])
@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_predict_rejects_sizes_below_one(flag, value, capsys):
    from glmtune.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["predict", "--model", "m", "--data", "d.jsonl", "--out", "o.jsonl", flag, value])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"error: argument {flag}: expected an integer >= 1, got '{value}'" in err
    assert "Traceback" not in err
