"""Length policies on multi-turn conversations longer than data.max_length."""

from __future__ import annotations

from glmtune.data.conversation import Conversation
from glmtune.layout import get_layout
from glmtune.layout.base import IGNORE_INDEX
from glmtune.layout.encode import encode_conversations


def long_chat(turns: int = 6) -> list[dict]:
    messages = [{"role": "system", "content": "You are Nova, a helpful assistant."}]
    for i in range(turns):
        messages += [{"role": "user", "content": f"Question {i}: " + "tell me more about the sea " * 4},
                     {"role": "assistant", "content": f"Answer {i}: the sea is large and blue."}]
    return messages


def trained_text(tok, ids, labels) -> str:
    return tok.decode([t for t, label in zip(ids, labels) if label != IGNORE_INDEX])


def test_keep_recent_keeps_system_and_the_whole_last_reply(tiny_tokenizer):
    layout = get_layout(tiny_tokenizer)
    messages = long_chat()
    full = layout.encode(messages, combine=True)
    limit = len(full.input_ids) // 2
    convs = [Conversation(messages, "f:1")]
    recent = encode_conversations(convs, layout, combine=True, max_length=limit, truncation="keep_recent")
    official = encode_conversations(convs, layout, combine=True, max_length=limit, truncation="official")
    ids, labels = recent.input_ids[0], recent.labels[0]
    assert len(ids) <= limit
    text = tiny_tokenizer.decode(ids)
    assert text.startswith("[gMASK]<sop><|system|>\nYou are Nova, a helpful assistant.")
    assert "Question 0" not in text and "Question 5" in text
    assert trained_text(tiny_tokenizer, ids, labels) == "Answer 5: the sea is large and blue.<|user|>"
    assert recent.truncated == 1 and recent.trained_tokens_removed == 0
    # the official right cut loses the trained reply entirely, so the sample is dropped
    assert official.input_ids == [] and official.dropped[0].code == "all_labels_truncated"
    assert official.truncated == 1 and official.trained_tokens_removed == full.num_trained


def test_keep_recent_counts_replies_dropped_with_old_turns(tiny_tokenizer):
    layout = get_layout(tiny_tokenizer)
    messages = long_chat()
    full = layout.encode(messages, combine=False)
    limit = len(full.input_ids) // 2
    result = encode_conversations([Conversation(messages, "f:1")], layout, combine=False, max_length=limit,
                                  truncation="keep_recent")
    kept = trained_text(tiny_tokenizer, result.input_ids[0], result.labels[0])
    assert kept.endswith("Answer 5: the sea is large and blue.<|user|>")
    assert "Answer 0" not in kept
    assert result.trained_tokens_removed == full.num_trained - sum(x != IGNORE_INDEX for x in result.labels[0])
    assert result.trained_tokens_removed > 0


def test_long_last_prompt_is_cut_from_the_left(tiny_tokenizer):
    layout = get_layout(tiny_tokenizer)
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "START " + "filler words here " * 60 + "END question?"},
                {"role": "assistant", "content": "Short answer."}]
    limit = 60
    result = encode_conversations([Conversation(messages, "f:1")], layout, combine=True, max_length=limit,
                                  truncation="keep_recent")
    ids, labels = result.input_ids[0], result.labels[0]
    text = tiny_tokenizer.decode(ids)
    assert len(ids) <= limit
    assert "Be brief." in text and "END question?" in text and "START" not in text
    assert trained_text(tiny_tokenizer, ids, labels) == "Short answer.<|user|>"
    assert result.trained_tokens_removed == 0
