"""Eval scores the answer without its reasoning and reports the reasoning's length apart."""

from __future__ import annotations

from glmtune.eval.metrics_table import metric_rows
from glmtune.eval.predictions import reasoning_stats, score_predictions


def test_reasoning_is_not_scored_and_is_measured_apart() -> None:
    plain = [{"prediction": "Paris is the capital.", "reference": "Paris is the capital."}]
    thinking = [
        {"prediction": "Paris is the capital.", "reasoning": "France, capital: Paris.", "reference": "Paris is the capital."},
        {"prediction": "<think>Capital? Paris.</think>\nParis is the capital.", "reference": "Paris is the capital."},
        {"prediction": "Hmm, Paris.</think>\nParis is the capital.", "reference": "Paris is the capital."},  # GLM-Z1 shape
    ]
    base = score_predictions(plain)
    scored = score_predictions(thinking)
    assert "reasoning" not in base
    assert scored["text"] | {"n": 1} == base["text"] and base["text"]["rouge-l"] > 99.99
    assert scored["degeneration"]["pred_len_mean"] == base["degeneration"]["pred_len_mean"]
    lengths = [len("France, capital: Paris."), len("Capital? Paris."), len("Hmm, Paris.")]
    assert scored["reasoning"] == {"n_with": 3, "share": 1.0, "chars_mean": sum(lengths) / 3,
                                   "chars_mean_all": sum(lengths) / 3}
    rows = {(section, name): value for section, name, value in metric_rows(scored)}
    assert rows[("reasoning", "replies with reasoning")] == "100.0% (3)"
    assert rows[("reasoning", "mean reasoning length")].startswith(f"{sum(lengths) / 3:.1f} chars")


def test_a_thinking_model_that_did_not_think_still_reports_it() -> None:
    assert reasoning_stats(["", ""], thinking=True) == {"n_with": 0, "share": 0.0, "chars_mean": 0.0,
                                                        "chars_mean_all": 0.0}
    assert reasoning_stats(["", ""]) is None
    scored = score_predictions([{"prediction": "Yes.", "reasoning": ""}, {"prediction": "No.", "reasoning": "Hm."}])
    assert scored["reasoning"]["n_with"] == 1 and scored["reasoning"]["share"] == 0.5
