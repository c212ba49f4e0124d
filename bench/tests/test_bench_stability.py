"""The stability benchmark's offline metrics: spike ratios, final loss and log parsing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.stability_runs import (
    final_loss,
    guard_event_counts,
    max_ratio,
    max_ratio_step,
    mean_sd,
    read_log,
    spike_ratios,
    step_losses,
)


def test_spike_ratios_use_the_ema_of_previous_losses() -> None:
    losses = [2.0, 2.0, 4.0, 1.0]
    # EMA: 2.0 after step 1, 2.0 after step 2, 0.9*2 + 0.1*4 = 2.2 after step 3.
    assert spike_ratios(losses) == pytest.approx([1.0, 2.0, 1.0 / 2.2])
    assert max_ratio(losses) == pytest.approx(2.0)


def test_spike_ratios_edge_cases() -> None:
    assert spike_ratios([]) == [] and max_ratio([3.0]) is None
    ratios = spike_ratios([1.0, math.nan, 1.0])
    assert ratios[0] == math.inf and ratios[1] == pytest.approx(1.0)  # NaN does not enter the average
    assert spike_ratios([1.0, 3.0], beta=0.5) == pytest.approx([3.0])


def test_final_loss_is_the_mean_of_the_last_ten() -> None:
    losses = [100.0] * 5 + [float(i) for i in range(10)]
    assert final_loss(losses) == pytest.approx(4.5)
    assert final_loss([1.0, 3.0]) == pytest.approx(2.0)
    assert final_loss([]) is None
    assert math.isnan(final_loss([1.0, math.nan]))


def test_parse_a_small_log(tmp_path: Path) -> None:
    rows = [
        {"step": 1, "epoch": 0.1, "loss": 3.0, "grad_norm": 1.0, "learning_rate": 1e-3},
        {"step": 2, "event": "loss_spike", "action": "skipped_update", "loss": 9.0, "grad_norm": 5.0},
        {"step": 2, "epoch": 0.2, "loss": 9.0, "grad_norm": 5.0, "learning_rate": 1e-3},
        {"step": 3, "epoch": 0.3, "loss": 0.0, "grad_norm": math.nan, "learning_rate": 1e-3},
        {"step": 3, "event": "nan_grad", "action": "skipped_update"},
        {"step": 3, "event": "rollback", "action": "rolled_back", "lr_scale": 0.5},
        {"step": 3, "epoch": 0.3, "eval_loss": 2.5},
        {"step": 4, "epoch": 0.4, "loss": 2.0, "grad_norm": 1.0, "learning_rate": 5e-4},
        {"step": 4, "train_loss": 3.5, "train_runtime": 1.0},
        {"step": 4, "event": "end", "best_step": None},
    ]
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\nnot json\n")
    parsed = read_log(path)
    assert len(parsed) == len(rows)
    losses = step_losses(parsed)
    assert losses[:2] == [3.0, 9.0] and math.isnan(losses[2]) and losses[3] == 2.0
    assert guard_event_counts(parsed) == {"loss_spike": 1, "nan_grad": 1, "rollback": 1}
    assert max_ratio(losses) == math.inf
    assert max_ratio([x for x in losses if math.isfinite(x)]) == pytest.approx(3.0)


def test_mean_sd_skips_missing_and_non_finite_values() -> None:
    mean, sd, bad = mean_sd([1.0, 3.0, None, math.nan])
    assert (mean, bad) == (2.0, 2) and sd == pytest.approx(math.sqrt(2))
    assert mean_sd([None]) == (None, None, 1)
    assert mean_sd([5.0]) == (5.0, 0.0, 0)


def test_max_ratio_step_names_the_logged_step() -> None:
    assert max_ratio_step([2.0, 2.0, 4.0, 1.0]) == 3
    assert max_ratio_step([math.nan, 2.0, 5.0]) == 3
    assert max_ratio_step([1.0]) is None
