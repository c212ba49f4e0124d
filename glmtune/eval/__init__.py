"""Scoring without a model: official GLM-4 ROUGE/BLEU, identity consistency and degeneration metrics."""

from glmtune.eval.degeneration import (
    Loop,
    degeneration_metrics,
    distinct_n,
    find_loop,
    finish_reason_share,
    has_loop,
    length_stats,
    loop_rate,
    units,
)
from glmtune.eval.identity import identity_scores, load_probes
from glmtune.eval.text_metrics import METRIC_KEYS, score_pair, segment, text_metrics

__all__ = [
    "METRIC_KEYS",
    "Loop",
    "degeneration_metrics",
    "distinct_n",
    "find_loop",
    "finish_reason_share",
    "has_loop",
    "identity_scores",
    "length_stats",
    "load_probes",
    "loop_rate",
    "score_pair",
    "segment",
    "text_metrics",
    "units",
]
