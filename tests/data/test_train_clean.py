"""Training-time repair, deduplication and identity-conflict filtering; self-replay's prompt framing and filters."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from bench.encode_loop import encode_sources_loop
from glmtune.config.schema import DataSource
from glmtune.data.conversation import Conversation
from glmtune.data.train_clean import CleanSettings, clean_for_training
from glmtune.errors import DataError
from glmtune.infer.generate import Generation
from glmtune.layout import get_layout
from glmtune.train.dataset import encode_sources
from glmtune.train.regularisers import self_replay


def conv(q: str, a: str, source: str) -> Conversation:
    return Conversation([{"role": "user", "content": q}, {"role": "assistant", "content": a}], source)


def test_repairs_dedupes_after_repair_and_drops_old_identity() -> None:
    convs = [conv("Who are you?", "I am Nova.", "f:1"), conv("  Who are you?\n", "I am Nova. ", "f:2"),
             conv("你是谁？", "我是ChatGLM，由智谱AI开发。", "f:3"), conv("Hi", "I am GLM-4-Helper by Nova Labs.", "f:4")]
    out = clean_for_training(convs, repair=True, name="GLM-4-Helper", author="Nova Labs", drop_conflicts=True)
    assert [c.source for c in out.kept] == ["f:1", "f:4"]  # a new name containing an old one is not a conflict
    codes = {r["source"]: r["code"] for r in out.rejects}
    assert codes == {"f:2": "duplicate", "f:3": "identity_conflict"}
    assert out.duplicates == 1 and out.conflicts == 1 and out.repairs["trimmed_whitespace"] == 1
    dup = next(r for r in out.rejects if r["code"] == "duplicate")
    assert dup["counts_as_rejected"] is False and "f:1" in dup["reason"] and json.loads(dup["raw"])["messages"]
    assert "ChatGLM" in next(r for r in out.rejects if r["code"] == "identity_conflict")["reason"]


def test_warn_mode_and_no_repair_keep_everything() -> None:
    convs = [conv("Who are you?", "I am ChatGLM.", "f:1"), conv("Who are you?", "I am ChatGLM.", "f:2")]
    out = clean_for_training(convs, repair=False, name="Nova", author=None, drop_conflicts=False)
    assert len(out.kept) == 2 and not out.rejects and out.summary() == ""


def test_duplicates_do_not_count_towards_the_reject_ratio(tmp_path: Path, tiny_tokenizer) -> None:
    rows = [{"messages": [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "I am Nova."}]}]
    rows = rows * 5 + [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "I am ChatGLM."}]}]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    layout = get_layout(tiny_tokenizer)
    clean = CleanSettings(True, "Nova", None, True)
    for encode in (encode_sources, encode_sources_loop):  # the datasets path and the in-memory reference agree
        enc = encode([DataSource(path=str(path))], layout, True, 256, tmp_path / "rej.jsonl", clean=clean,
                     max_reject_ratio=0.2)
        assert len(enc.rows) == 1  # 4 duplicates removed (not counted) + 1 conflict (1 of 6 = 17% <= 20%)
        lines = (tmp_path / "rej.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(lines) == 5  # nothing lost: every left-out record is listed
        assert sorted(json.loads(x)["code"] for x in lines) == ["duplicate"] * 4 + ["identity_conflict"]
        with pytest.raises(DataError, match="1 of 6 records"):
            encode([DataSource(path=str(path))], layout, True, 256, None, clean=clean, max_reject_ratio=0.1)


def test_user_turn_frame_glm4(tiny_tokenizer) -> None:
    prefix, ends = self_replay.user_turn_frame(tiny_tokenizer)
    assert prefix == "[gMASK]<sop><|user|>\n"
    assert ends == [tiny_tokenizer.convert_tokens_to_ids("<|assistant|>")]


def test_self_replay_filters_drafts(monkeypatch: pytest.MonkeyPatch, tiny_model: Path, tiny_tokenizer) -> None:
    from glmtune.models import load_model

    drafts = ["What is 2 plus 3?", "", "What is 2 plus 3?", "Are you ChatGLM?", "train prompt", "Say hi",
              "Count on", "Loop please"]
    replies = {"What is 2 plus 3?": Generation("5", "stop", 2), "Say hi": Generation("hi", "stop", 2),
               "Count on": Generation("1 2 3", "length", 48),
               "Loop please": Generation("la la la la la la la la la la la la la la la la", "stop", 30)}
    calls: list[int] = []
    monkeypatch.setattr(self_replay, "sample_prompts", lambda *a, **k: [] if calls else (calls.append(1) or drafts))
    monkeypatch.setattr(self_replay, "generate_replies",
                        lambda m, t, lay, prompts, **k: [replies[p[0]["content"]] for p in prompts])
    model = load_model(str(tiny_model))
    model.train()
    model.config.use_cache = False
    result = self_replay.build_self_replay(model, tiny_tokenizer, get_layout(tiny_tokenizer), 5, 0,
                                           {"train prompt"}, ("Nova",))
    kept = sorted(c[0]["content"] for c in result.conversations)
    assert kept == ["Say hi", "What is 2 plus 3?"]
    reasons = sorted(d["reason"] for d in result.dropped)
    assert reasons == ["duplicate or training prompt", "duplicate or training prompt", "names an identity",
                       "reply did not stop", "reply loops", "unfinished or empty prompt"]
    assert model.training is True and model.config.use_cache is False  # the training state is restored


def test_self_replay_prompt_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model: Path,
                                    tiny_tokenizer) -> None:
    """auto takes the bundled prompts first and samples only the rest; a file replaces them; model samples all."""
    from glmtune.models import load_model

    bundled = self_replay.read_prompts("bundled")
    assert len(bundled) >= 100 and len(set(bundled)) == len(bundled)
    assert any("\u4e00" <= ch <= "\u9fff" for p in bundled for ch in p)  # Chinese and English
    asked: list[int] = []
    monkeypatch.setattr(self_replay, "sample_prompts", lambda m, t, n, s: asked.append(n) or [f"sampled {i}"
                                                                                             for i in range(n)])
    monkeypatch.setattr(self_replay, "generate_replies",
                        lambda m, t, lay, prompts, **k: [Generation("ok", "stop", 1) for _ in prompts])
    model = load_model(str(tiny_model))
    layout = get_layout(tiny_tokenizer)
    few = self_replay.build_self_replay(model, tiny_tokenizer, layout, 10, 0, set(), source="auto")
    assert asked == [] and {c[0]["content"] for c in few.conversations} <= set(bundled)
    many = self_replay.build_self_replay(model, tiny_tokenizer, layout, 60, 0, set(), source="auto")
    assert asked == [60 * self_replay.OVERSAMPLE - len(bundled)] and len(many.conversations) == 60
    listed = tmp_path / "prompts.jsonl"
    listed.write_text('{"prompt": "Name a colour."}\n\n{"messages": [{"role": "user", "content": "Hi?"}]}\n'
                      "plain line prompt\n", encoding="utf-8")
    mine = self_replay.build_self_replay(model, tiny_tokenizer, layout, 10, 0, set(), source=str(listed))
    assert sorted(c[0]["content"] for c in mine.conversations) == ["Hi?", "Name a colour.", "plain line prompt"]
    asked.clear()
    self_replay.build_self_replay(model, tiny_tokenizer, layout, 4, 0, set(), source="model")
    assert asked == [4 * self_replay.OVERSAMPLE]


def test_self_replay_prompts_file_errors_name_the_line(tmp_path: Path) -> None:
    from glmtune.config.loader import ConfigError

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"prompt": \n{"other": 1}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.jsonl:2: data.self_replay_prompts: not valid JSON"):
        self_replay.read_prompts(str(bad))
    bad.write_text('{"prompt": "fine"}\n{"other": 1}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.jsonl:2: .*expected a 'prompt' string"):
        self_replay.read_prompts(str(bad))
    with pytest.raises(ConfigError, match="cannot read"):
        self_replay.read_prompts(str(tmp_path / "missing.jsonl"))


def test_context_samples_put_training_questions_after_other_turns() -> None:
    """A share of self-replay exchanges is followed by a single-turn training conversation; held-out ones never."""
    replay = [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}] for i in range(6)]
    task = [[{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "I am Nova."}]]
    assert self_replay.add_context(replay, task, 0.5, 0) == 3
    assert [len(c) for c in replay] == [4, 4, 4, 2, 2, 2]
    assert replay[0][2:] == task[0] and replay[0][:2] == [{"role": "user", "content": "q0"},
                                                          {"role": "assistant", "content": "a0"}]
    assert self_replay.add_context(replay, [], 0.5, 0) == 0
    assert self_replay.single_turn(task[0])
    assert not self_replay.single_turn([{"role": "system", "content": "s"}, *task[0]])
    assert not self_replay.single_turn([{"role": "user", "content": "w"},
                                        {"role": "assistant", "content": "{}", "metadata": "get_weather"}])


def test_context_samples_come_after_one_to_max_turns_borrowed_exchanges() -> None:
    """With max_turns 4 the context samples sit after 1, 2, 3 and 4 exchanges, borrowed from the samples that
    stay plain (which are left unchanged), and the same seed gives the same samples."""
    def replay() -> list[list[dict[str, str]]]:
        return [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}] for i in range(12)]

    task = [[{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "I am Nova."}]]
    convs = replay()
    assert self_replay.add_context(convs, task, 1 / 3, 0, max_turns=4) == 4
    assert [len(c) // 2 for c in convs[:4]] == [2, 3, 4, 5]  # own exchange + borrowed + the training one
    assert convs[4:] == replay()[4:]
    for conv in convs[:4]:
        assert conv[-2:] == task[0]
        assert {m["content"] for m in conv[:-4]} <= {m["content"] for c in replay()[4:] for m in c}
    again = replay()
    self_replay.add_context(again, task, 1 / 3, 0, max_turns=4)
    assert again == convs


def test_self_replay_rows_train_both_replies_of_context_samples(monkeypatch: pytest.MonkeyPatch, tiny_model: Path,
                                                                tiny_tokenizer, caplog: pytest.LogCaptureFixture) -> None:
    from glmtune.models import load_model

    monkeypatch.setattr(self_replay, "generate_replies",
                        lambda m, t, lay, prompts, **k: [Generation("fine", "stop", 1) for _ in prompts])
    train = [Conversation([{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "Nova."}],
                          "t.jsonl:1"),
             Conversation([{"role": "user", "content": "Held out?"}, {"role": "assistant", "content": "Yes."}],
                          "t.jsonl:2")]
    model = load_model(str(tiny_model))
    caplog.set_level(logging.INFO, logger="glmtune")
    rows = self_replay.self_replay_rows(model, tiny_tokenizer, get_layout(tiny_tokenizer), 2.0, train, 2, 0, 256,
                                        "keep_recent", ("Nova",), None, "bundled", 0.5, {"t.jsonl:2"})
    lines = [r.getMessage() for r in caplog.records if r.name == self_replay.__name__]
    assert len(rows) == 4 and "2 followed by a training conversation" in lines[0]
    decoded = [tiny_tokenizer.decode([t for t in r["labels"] if t != -100]) for r in rows]
    assert all("Held out" not in tiny_tokenizer.decode(r["input_ids"]) for r in rows)
    assert decoded[0].count("fine") == 1 and "Nova." in decoded[0]  # both replies of a context sample are trained
    assert "Nova." not in decoded[3] and "fine" in decoded[3]


def test_self_replay_samples_in_rounds_and_stops_when_few_drafts_survive(monkeypatch: pytest.MonkeyPatch,
                                                                       tiny_model: Path, tiny_tokenizer) -> None:
    """A model that writes usable prompts is sampled until enough are kept; a poor writer is given up on."""
    from glmtune.models import load_model

    asked: list[int] = []

    def sampler(model, tokenizer, n, seed, good_every):
        asked.append(n)
        return [f"p{seed}-{i}" if i % good_every == 0 else "" for i in range(n)]

    monkeypatch.setattr(self_replay, "generate_replies",
                        lambda m, t, lay, prompts, **k: [Generation("ok", "stop", 1) for _ in prompts])
    model, layout = load_model(str(tiny_model)), get_layout(tiny_tokenizer)
    monkeypatch.setattr(self_replay, "SAMPLE_ROUND", 30)
    monkeypatch.setattr(self_replay, "sample_prompts", lambda m, t, n, s: sampler(m, t, n, s, 2))  # half usable
    good = self_replay.build_self_replay(model, tiny_tokenizer, layout, 40, 0, set(), source="model")
    assert len(good.conversations) == 40 and len(asked) > 2 and max(asked) <= 30
    asked.clear()
    monkeypatch.setattr(self_replay, "sample_prompts", lambda m, t, n, s: sampler(m, t, n, s, 20))  # 5% usable
    poor = self_replay.build_self_replay(model, tiny_tokenizer, layout, 40, 0, set(), source="model")
    assert asked == [30] and len(poor.conversations) == 2  # one round, then it stops
