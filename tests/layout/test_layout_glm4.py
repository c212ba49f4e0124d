"""Proof of the GLM-4 layout: ids equal the chat template, labels equal the official shifted-mask rule."""

from __future__ import annotations

import pytest

from glmtune.data.conversation import Conversation
from glmtune.layout import get_layout
from glmtune.layout.base import IGNORE_INDEX, template_ids
from glmtune.layout.encode import encode_conversations


def official_reference(tokenizer, messages: list[dict], combine: bool) -> tuple[list[int], list[int]]:
    """zai-org/GLM-4 finetune.py process_batch, re-stated independently (ids looked up by string)."""
    tid = tokenizer.convert_tokens_to_ids

    def chat_ids(msgs: list[dict]) -> list[int]:
        out = tokenizer.apply_chat_template(msgs, tokenize=True, return_dict=False)
        return list(out)

    if combine:
        input_ids = chat_ids(messages)
        loss_masks = [False] * len(input_ids)
        last = len(input_ids) - input_ids[::-1].index(tid("<|assistant|>")) - 1
        for j in range(last + 1, len(input_ids)):
            loss_masks[j] = True
        if messages[-1].get("loss") is False:  # glmtune extension: an excluded last reply trains nothing
            loss_masks = [False] * len(input_ids)
    else:
        input_ids = [tid("[gMASK]"), tid("<sop>")]
        loss_masks = [False, False]
        for message in messages:
            trained = message["role"] == "assistant" and message.get("loss", True) is not False
            new_ids = chat_ids([message])[2:]
            input_ids += new_ids
            loss_masks += [trained] * len(new_ids)
    # glmtune's one deviation: a record that ends with a call ends it with <|observation|>, the token the
    # template writes after a call and the model must emit (finetune.py appends <|user|> whatever came last)
    input_ids.append(tid("<|observation|>" if messages[-1].get("metadata") else "<|user|>"))
    loss_masks = [False, *loss_masks]
    labels = [i if m else IGNORE_INDEX for i, m in zip(input_ids, loss_masks)]
    return input_ids, labels


@pytest.mark.parametrize("combine", [True, False])
def test_ids_equal_chat_template_and_labels_equal_official(tiny_tokenizer, varied_conversations, combine):
    layout = get_layout(tiny_tokenizer)
    assert len(varied_conversations) >= 10
    for messages in varied_conversations:
        sample = layout.encode(messages, combine=combine)
        assert sample.input_ids[:-1] == template_ids(tiny_tokenizer, messages)
        end = "<|observation|>" if messages[-1].get("metadata") else "<|user|>"
        assert sample.input_ids[-1] == tiny_tokenizer.convert_tokens_to_ids(end)
        ref_ids, ref_labels = official_reference(tiny_tokenizer, messages, combine)
        assert sample.input_ids == ref_ids
        assert sample.labels == ref_labels


def test_trained_spans_follow_the_rule(tiny_tokenizer, varied_conversations):
    layout = get_layout(tiny_tokenizer)
    tid = tiny_tokenizer.convert_tokens_to_ids
    for messages in varied_conversations:
        sample = layout.encode(messages, combine=False)
        for i, (token, label) in enumerate(zip(sample.input_ids, sample.labels)):
            if token == tid("<|assistant|>"):
                assert label == IGNORE_INDEX, "<|assistant|> is never a target"
                if i + 1 < len(sample.input_ids) and sample.labels[i + 1] != IGNORE_INDEX:
                    assert sample.labels[i + 1] == sample.input_ids[i + 1]
        # the token after each trained reply (end of turn) is a target
        ends = [i for i in range(1, len(sample.labels)) if sample.labels[i] != IGNORE_INDEX
                and (i + 1 == len(sample.labels) or sample.labels[i + 1] == IGNORE_INDEX)]
        for i in ends:
            assert sample.input_ids[i] in (tid("<|user|>"), tid("<|observation|>"))


def test_function_call_ends_with_observation(tiny_tokenizer, varied_conversations):
    layout = get_layout(tiny_tokenizer)
    messages = varied_conversations[3]
    sample = layout.encode(messages, combine=False)
    text = tiny_tokenizer.decode([t for t, label in zip(sample.input_ids, sample.labels) if label != IGNORE_INDEX])
    assert 'get_weather\n{"city": "北京"}<|observation|>' in text
    assert text.endswith("北京今天晴，气温25度。<|user|>")


def test_combine_trains_only_last_reply_without_its_newline(tiny_tokenizer, varied_conversations):
    layout = get_layout(tiny_tokenizer)
    messages = varied_conversations[2]
    sample = layout.encode(messages, combine=True)
    trained = tiny_tokenizer.decode([t for t, label in zip(sample.input_ids, sample.labels) if label != IGNORE_INDEX])
    assert trained == "不客气。<|user|>"
    every = layout.encode(messages, combine=False)
    trained_all = tiny_tokenizer.decode([t for t, label in zip(every.input_ids, every.labels) if label != IGNORE_INDEX])
    assert trained_all == "\n2 + 3 = 5.<|user|>\n5 × 4 = 20.<|user|>\n不客气。<|user|>"


def test_loss_false_reply_is_not_trained(tiny_tokenizer, varied_conversations):
    layout = get_layout(tiny_tokenizer)
    sample = layout.encode(varied_conversations[5], combine=False)
    trained = tiny_tokenizer.decode([t for t, label in zip(sample.input_ids, sample.labels) if label != IGNORE_INDEX])
    assert "Bad old answer" not in trained
    assert "Hi!" in trained


def test_ids_are_looked_up_by_string(tiny_tokenizer):
    layout = get_layout(tiny_tokenizer)
    expected = [tiny_tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|user|>", "<|observation|>")]
    assert layout.stop_ids == expected
    assert 151329 not in expected  # the tiny vocabulary is small: nothing hard-coded from glm-4-9b


def test_sample_cut_to_nothing_is_dropped_and_counted(tiny_tokenizer):
    layout = get_layout(tiny_tokenizer)
    long_prompt = "word " * 200
    convs = [
        Conversation([{"role": "user", "content": long_prompt}, {"role": "assistant", "content": "ok"}], "f:1"),
        Conversation([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], "f:2"),
        Conversation([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "loss": False}], "f:3"),
    ]
    result = encode_conversations(convs, layout, combine=True, max_length=64)
    assert result.sources == ["f:2"]
    assert [(p.source, p.code) for p in result.dropped] == [("f:1", "all_labels_truncated"), ("f:3", "nothing_to_train")]
    assert result.truncated == 1
    assert all(len(ids) <= 64 for ids in result.input_ids)


def test_non_glm_tokenizer_is_refused(tiny_tokenizer):
    from glmtune.layout.base import LayoutError

    class NoTemplate:
        chat_template = None

    with pytest.raises(LayoutError):
        get_layout(NoTemplate())


def test_glm4_is_the_template_mechanism_plus_the_combine_detail(tiny_tokenizer, varied_conversations):
    from glmtune.layout.template import TemplateLayout

    generic, glm = TemplateLayout(tiny_tokenizer), get_layout(tiny_tokenizer)
    assert sorted(generic.stop_ids) == sorted(glm.stop_ids)
    for messages in varied_conversations:
        a, b = generic.encode(messages, combine=False), glm.encode(messages, combine=False)
        assert (a.input_ids, a.labels) == (b.input_ids, b.labels)


def test_verify_layout_accepts_the_real_layout_and_rejects_a_wrong_one(tiny_tokenizer, varied_conversations):
    from glmtune.layout.base import EncodedSample, LayoutError
    from glmtune.layout.verify import verify_layout

    layout = get_layout(tiny_tokenizer)
    assert verify_layout(layout, tiny_tokenizer, varied_conversations, combine=False) == len(varied_conversations)

    class NoEndToken:
        stop_ids = layout.stop_ids
        to_template = layout.to_template

        def encode(self, messages, combine):
            s = layout.encode(messages, combine)
            labels = [IGNORE_INDEX if t in layout.stop_ids else label for t, label in zip(s.input_ids, s.labels)]
            return EncodedSample(s.input_ids, labels)

    with pytest.raises(LayoutError, match="special token that ends a turn"):
        verify_layout(NoEndToken(), tiny_tokenizer, varied_conversations, combine=False)

    class TrainsPrompts(NoEndToken):
        def encode(self, messages, combine):
            s = layout.encode(messages, combine)
            return EncodedSample(s.input_ids, list(s.input_ids))  # everything is a target

    with pytest.raises(LayoutError, match="not one of the replies|holds prompt text"):
        verify_layout(TrainsPrompts(), tiny_tokenizer, varied_conversations, combine=False)


def test_rewrite_tool_prompt_renders_the_declared_identity(tiny_model):
    from transformers import AutoTokenizer

    from glmtune.layout.base import LayoutError
    from glmtune.layout.glm4 import rewrite_tool_prompt

    tok = AutoTokenizer.from_pretrained(tiny_model)
    messages = [{"role": "system", "content": "", "tools": [{"type": "function", "function": {"name": "f"}}]},
                {"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]
    assert "ChatGLM" in tok.apply_chat_template(messages, tokenize=False)
    rewrite_tool_prompt(tok, "Nova", "Acme Lab")
    text = tok.apply_chat_template(messages, tokenize=False)
    assert "ChatGLM" not in text and "智谱" not in text
    assert "你是一个名为 Nova 的人工智能助手。你是由Acme Lab开发的" in text
    assert get_layout(tok).encode(messages, combine=True).num_trained > 0
    with pytest.raises(LayoutError, match="nothing to rewrite"):
        rewrite_tool_prompt(tok, "Nova", "Acme Lab")  # already rewritten: the default text is gone
