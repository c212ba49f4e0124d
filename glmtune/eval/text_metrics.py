"""ROUGE-1/2/L and BLEU-4 exactly as the official GLM-4 fine-tuning evaluation defines them.

Definition (zai-org/GLM-4 ``finetune.py`` ``compute_metrics``), per (prediction, reference) pair:

* both texts are stripped and segmented with ``jieba.cut`` (default dictionary, default mode);
* ROUGE-1/2/L = ``rouge_chinese.Rouge().get_scores(" ".join(pred), " ".join(ref))[0][key]["f"] * 100``;
* BLEU-4 = ``nltk`` ``sentence_bleu([ref], pred, smoothing_function=SmoothingFunction().method3)``,
  on the raw jieba tokens (whitespace tokens included) and *not* multiplied by 100;
* corpus values are plain means over the pairs.

Two deliberate differences from the official code: it rounds each pair's ROUGE to 4 decimals before
averaging (we do not; the difference is below 5e-5), and it crashes on an empty prediction or reference
(we score such a pair 0 on all four metrics and count it in ``n_empty``). Any other exception raised by
the scorers on a degenerate pair is also scored 0 on all four metrics and counted in ``n_error``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

METRIC_KEYS: tuple[str, ...] = ("rouge-1", "rouge-2", "rouge-l", "bleu-4")

_lock = threading.Lock()
_backend: dict[str, Any] = {}


def _load_backend() -> dict[str, Any]:
    """Import jieba, rouge_chinese and nltk on first use, with jieba's startup logging silenced."""
    if _backend:
        return _backend
    with _lock:
        if not _backend:
            import jieba
            from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
            from rouge_chinese import Rouge

            jieba.setLogLevel(logging.WARNING)
            jieba.initialize()
            _backend.update(
                cut=jieba.cut,
                rouge=Rouge,
                bleu=sentence_bleu,
                smoothing=SmoothingFunction().method3,
            )
    return _backend


def segment(text: str) -> list[str]:
    """Strip ``text`` and segment it with ``jieba.cut`` the way the official evaluation does."""
    cut: Callable[[str], Any] = _load_backend()["cut"]
    return list(cut(text.strip()))


def _is_blank(tokens: list[str]) -> bool:
    """True when there are no tokens, or every token is whitespace."""
    return not any(tok.strip() for tok in tokens)


def _zero() -> dict[str, float]:
    """All four metrics at 0."""
    return dict.fromkeys(METRIC_KEYS, 0.0)


def _score(prediction: str, reference: str) -> tuple[dict[str, float], str]:
    """Score one pair and say how it went: ``"ok"``, ``"empty"`` or ``"error"``."""
    backend = _load_backend()
    pred_tokens = segment(prediction)
    ref_tokens = segment(reference)
    if _is_blank(pred_tokens) or _is_blank(ref_tokens):
        return _zero(), "empty"
    try:
        rouge = backend["rouge"]().get_scores(" ".join(pred_tokens), " ".join(ref_tokens))[0]
        bleu = backend["bleu"]([ref_tokens], pred_tokens, smoothing_function=backend["smoothing"])
    except Exception:  # degenerate input the scorers cannot handle: score 0, count it
        return _zero(), "error"
    return {
        "rouge-1": rouge["rouge-1"]["f"] * 100,
        "rouge-2": rouge["rouge-2"]["f"] * 100,
        "rouge-l": rouge["rouge-l"]["f"] * 100,
        "bleu-4": float(bleu),
    }, "ok"


def score_pair(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1/2/L (0-100) and BLEU-4 (0-1) of one prediction against one reference; 0s when either is empty."""
    return _score(prediction, reference)[0]


def text_metrics(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L and BLEU-4 over pairs, with ``n``, ``n_empty`` and ``n_error`` counts."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    totals = _zero()
    n_empty = n_error = 0
    for prediction, reference in zip(predictions, references, strict=True):
        scores, status = _score(prediction, reference)
        n_empty += status == "empty"
        n_error += status == "error"
        for key in METRIC_KEYS:
            totals[key] += scores[key]
    n = len(predictions)
    result: dict[str, float] = {key: (totals[key] / n if n else 0.0) for key in METRIC_KEYS}
    result.update(n=n, n_empty=n_empty, n_error=n_error)
    return result
