"""glmtune.eval.text_metrics on real alpaca_zh outputs, checked against an independent re-computation."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from glmtune.eval import loop_rate, score_pair, text_metrics

DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DATA_FILE = DATA_DIR / "alpaca_zh_demo.json"
N_SAMPLES = 50


@pytest.fixture(scope="module")
def outputs() -> list[str]:
    """The first outputs of alpaca_zh_demo.json (skips when the shared data folder is absent)."""
    if not DATA_FILE.is_file():
        pytest.skip(f"real-data test needs {DATA_FILE} (the shared data folder next to the repo); not found")
    records = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    texts = [r["output"] for r in records if isinstance(r.get("output"), str) and r["output"].strip()]
    assert len(texts) >= N_SAMPLES
    return texts[:N_SAMPLES]


def _perturb(references: list[str]) -> list[str]:
    """Deterministic predictions: drop every 3rd character, pair with the next sample, or blank out."""
    predictions = []
    for i, ref in enumerate(references):
        if i % 10 == 9:
            predictions.append("   ")  # empty after strip
        elif i % 2 == 0:
            predictions.append("".join(ch for k, ch in enumerate(ref) if k % 3 != 2))
        else:
            predictions.append(references[(i + 1) % len(references)])
    return predictions


def _reference_implementation(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Straightforward re-computation after the official GLM-4 compute_metrics (no rounding, empties -> 0)."""
    import jieba
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from rouge_chinese import Rouge

    jieba.setLogLevel(logging.WARNING)
    sums = {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0, "bleu-4": 0.0}
    for pred, label in zip(predictions, references, strict=True):
        pred_tokens = list(jieba.cut(pred.strip()))
        label_tokens = list(jieba.cut(label.strip()))
        if not pred.strip() or not label.strip():
            continue  # scores 0
        scores = Rouge().get_scores(" ".join(pred_tokens), " ".join(label_tokens))
        for key, value in scores[0].items():
            sums[key] += value["f"] * 100
        sums["bleu-4"] += sentence_bleu(
            [label_tokens], pred_tokens, smoothing_function=SmoothingFunction().method3
        )
    return {key: value / len(predictions) for key, value in sums.items()}


def test_text_metrics_match_independent_recomputation(outputs: list[str]) -> None:
    references = outputs
    predictions = _perturb(references)
    got = text_metrics(predictions, references)
    want = _reference_implementation(predictions, references)
    assert got["n"] == N_SAMPLES
    assert got["n_empty"] == N_SAMPLES // 10
    assert got["n_error"] == 0
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-9, rel=0), key
    # Sanity: perturbed-but-related text scores well above unrelated text and below a perfect match.
    assert 10.0 < got["rouge-1"] < 100.0
    assert 0.0 < got["bleu-4"] < 1.0


def test_dropping_characters_scores_between_unrelated_and_identical(outputs: list[str]) -> None:
    ref = outputs[0]
    dropped = "".join(ch for k, ch in enumerate(ref) if k % 3 != 2)
    same, partial, other = score_pair(ref, ref), score_pair(dropped, ref), score_pair(outputs[1], ref)
    for key in ("rouge-1", "rouge-2", "rouge-l", "bleu-4"):
        assert same[key] > partial[key] > other[key], key


def test_real_answers_rarely_loop(outputs: list[str]) -> None:
    # Well-formed human-written answers should (almost) never be flagged as degenerate loops.
    assert loop_rate(outputs) <= 0.02
