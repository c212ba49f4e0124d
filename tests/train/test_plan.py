"""The capacity planner: auto values follow data and model size, explicit values win, reasons exist."""

from __future__ import annotations

from glmtune.config.loader import validate_config
from glmtune.train.plan import DataStats, ModelShape, make_plan


def config(**sections):
    data = {"model": {"name_or_path": "m"}, "data": {"train_file": "t.jsonl"}}
    for key, value in sections.items():
        data[key] = value
    return validate_config(data)


def values(plan) -> dict:
    return {item.key: item.value for item in plan.items}


def test_thirty_and_thirty_thousand_samples_get_different_plans():
    small = values(make_plan(config(), DataStats(30, 600, 1500), params=9_000_000_000, has_eval_file=False))
    big = values(make_plan(config(), DataStats(30_000, 6_000_000, 15_000_000), 9_000_000_000, has_eval_file=False))
    for key in ("data.val_size", "peft.lora.r", "peft.lora.target_modules", "training.num_train_epochs",
                "training.gradient_accumulation_steps", "training.learning_rate", "peft.lora.dropout"):
        assert small[key] != big[key], key
    assert small["training.per_device_train_batch_size"] == 1  # 9B: accumulate instead
    assert small["data.val_size"] == 4 and big["data.val_size"] == 200
    assert small["training.num_train_epochs"] > big["training.num_train_epochs"]


def test_tiny_model_gets_all_linear_and_more_epochs():
    tiny = values(make_plan(config(), DataStats(30, 600, 1500), params=1_000_000, has_eval_file=False))
    large = values(make_plan(config(), DataStats(30, 600, 1500), params=9_000_000_000, has_eval_file=False))
    assert tiny["peft.lora.target_modules"] == "all-linear"
    assert large["peft.lora.target_modules"] == ["q_proj", "k_proj", "v_proj"]
    assert tiny["training.num_train_epochs"] > large["training.num_train_epochs"]


def test_explicit_values_win_and_every_item_has_a_reason():
    cfg = config(training={"learning_rate": 1e-4, "num_train_epochs": 2}, peft={"lora": {"r": 4}})
    plan = make_plan(cfg, DataStats(30, 600, 1500), params=1_000_000, has_eval_file=False)
    v = values(plan)
    assert v["training.learning_rate"] == 1e-4 and v["peft.lora.r"] == 4 and v["training.num_train_epochs"] == 2
    sources = {item.key: item.source for item in plan.items}
    assert sources["training.learning_rate"] == "config" and sources["training.weight_decay"] == "auto"
    assert all(item.reason for item in plan.items)
    assert plan.config.training.learning_rate == 1e-4
    assert all(getattr(plan.config.training, k) != "auto" for k in ("warmup_ratio", "eval_steps", "patience"))


def test_tiny_data_turns_early_stopping_off_with_a_reason():
    plan = make_plan(config(), DataStats(8, 100, 300), params=1_000_000, has_eval_file=False)
    v = values(plan)
    assert v["data.val_size"] == 0 and v["training.early_stopping"] is False


def test_replay_ratio_only_with_a_replay_file():
    assert values(make_plan(config(), DataStats(30, 600, 1500), 1_000_000, False))["data.replay_ratio"] == 0.0
    cfg = config(data={"train_file": "t.jsonl", "replay_file": "r.jsonl"})
    assert values(make_plan(cfg, DataStats(30, 600, 1500), 1_000_000, False))["data.replay_ratio"] == 0.2


def test_official_config_is_left_alone(tmp_path):
    from pathlib import Path

    from glmtune.config.loader import load_config

    data = tmp_path / "d.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n')
    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / "configs" / "lora.yaml", [f"data.train_file={data}"])
    plan = make_plan(cfg, DataStats(30, 600, 1500), params=9_000_000_000, has_eval_file=False)
    auto = [item.key for item in plan.items if item.source == "auto" and item.key != "training.total_steps"]
    assert auto == ["training.early_stopping"] or auto == []
    v = values(plan)
    assert (v["peft.lora.r"], v["peft.lora.alpha"], v["training.learning_rate"]) == (8, 32, 5e-4)


def _spread_lengths(n: int = 400) -> DataStats:
    """Alpaca-like lengths: mostly short, some long, in random order (heavy padding when batched as they come)."""
    import random

    rng = random.Random(0)
    lengths = [min(512, int(rng.lognormvariate(4.5, 0.7))) for _ in range(n)]
    return DataStats(n, sum(lengths) // 2, sum(lengths), max(lengths), lengths)


def test_batching_groups_by_length_on_a_narrow_model_without_varlen_attention() -> None:
    """Packed rows under a block mask pay O(row²) attention; on a 128-wide model that outweighs the padding."""
    from glmtune.train.plan_rules import rule_batching

    stats = _spread_lengths()
    how, why = rule_batching(stats, 8, "sdpa", 128)
    assert how == "grouping" and "block mask" in why
    assert stats.step_cost(8, 128, "packing") > stats.step_cost(8, 128, "grouping")


def test_batching_packs_a_wide_model_or_with_flash_attention() -> None:
    """On a 4096-wide model the linear layers dominate, so removing padding wins; varlen kernels always pack."""
    from glmtune.train.plan_rules import rule_batching

    stats = _spread_lengths()
    assert rule_batching(stats, 8, "sdpa", 4096)[0] == "packing"
    assert rule_batching(stats, 8, "flash_attention_2", 128)[0] == "packing"
    assert rule_batching(DataStats(64, 640, 1280, 20, [20] * 64), 8, "sdpa", 128)[0] == "none"
    assert rule_batching(stats, 1, "sdpa", 128)[0] == "none"


def test_plan_reads_width_or_estimates_it() -> None:
    """The plan's batching choice follows the model width; without it the width comes from the parameter count."""
    stats = _spread_lengths()
    alone = {"train_file": "t.jsonl", "self_replay": 0}
    narrow = values(make_plan(config(data=alone), stats, params=1_000_000, has_eval_file=False,
                             shape=ModelShape(1_000_000, 128)))
    wide = values(make_plan(config(data=alone), stats, params=1_000_000, has_eval_file=False,
                           shape=ModelShape(1_000_000, 4096)))
    assert (narrow["data.packing"], narrow["data.group_by_length"]) == (False, True)
    assert wide["data.packing"] is True
    estimated = make_plan(config(), stats, params=1_000_000_000, has_eval_file=False)
    assert "at width 2027" in next(i.reason for i in estimated.items if i.key == "data.packing")  # 1B: ~2,048 wide
    assert values(make_plan(config(data=alone), stats, params=1_000_000, has_eval_file=False))["data.packing"] is False


def test_batching_keeps_batches_random_when_replay_is_mixed_in() -> None:
    """Self-replay (auto below 1000 samples) rules out length grouping: it would separate task and replay."""
    from glmtune.train.plan_rules import rule_batching

    stats = _spread_lengths()
    how, why = rule_batching(stats, 8, "sdpa", 128, mixed=True)
    # packed rows of ~940 tokens still beat padding every micro-batch to its longest sample (up to 512)
    assert how == "packing" and "replay is mixed in" in why
    assert stats.step_cost(8, 128, "packing") < stats.step_cost(8, 128, "plain")
    same = DataStats(64, 640, 1280, 20, [20] * 60 + [200] * 4)
    assert rule_batching(same, 8, "sdpa", 128, mixed=True)[0] == "none"  # one long sample per batch: pad, don't pack
    planned = values(make_plan(config(), stats, params=1_000_000, has_eval_file=False,
                             shape=ModelShape(1_000_000, 128)))
    assert planned["data.self_replay"] == 2.0 and planned["data.group_by_length"] is False


def test_checkpointing_follows_where_the_memory_goes() -> None:
    """Selective checkpointing when activations dominate, full only when selective would not fit the GPU."""
    from glmtune.train.plan_rules import rule_checkpointing

    glm9b = ModelShape(9_400_000_000, 4096, 13696, 40, 151552)
    short = DataStats(100, 20_000, 50_000, 512, [512] * 100)
    long = DataStats(100, 200_000, 800_000, 8192, [8192] * 100)
    off, why = rule_checkpointing(short, 1, 1024, glm9b, weight_bytes=2, act_bytes=2)
    assert off is False and "less than the weights take" in why
    on, why = rule_checkpointing(long, 1, 8192, glm9b, 2, 2)
    assert on == "selective" and "recomputes no matrix product" in why
    tight, why = rule_checkpointing(short, 1, 1024, glm9b, 2, 2, device_memory=24 * 2**30)
    assert tight is True and "even selective exceeds 80% of the device's 24.0 GiB" in why
    # 8,192 tokens on an 80 GB card with the chunked loss (the planner's default): too much without
    # checkpointing, fits with the selective kind
    roomy, why = rule_checkpointing(long, 1, 8192, glm9b, 2, 2, device_memory=80 * 2**30, head_rows=1024)
    assert roomy == "selective" and "over 80% of the device's 80.0 GiB without" in why
    small = ModelShape(13_100_000, 512, 1536, 4, 2090)  # bench/throughput.py's "small" model
    assert rule_checkpointing(short, 8, 512, small, 4, 4)[0] == "selective"
    tiny = ModelShape(1_057_152, 128, 384, 4, 3000)
    assert rule_checkpointing(short, 8, 512, tiny, 4, 4)[0] == "selective"
    assert rule_checkpointing(short, 2, 512, tiny, 4, 4)[0] is False  # frees a few MiB
    # max_length caps the longest sample the estimate counts
    assert rule_checkpointing(long, 1, 512, glm9b, 2, 2)[0] is False


def test_plan_decides_checkpointing_unless_set() -> None:
    """The plan resolves training.gradient_checkpointing; an explicit value is kept."""
    stats = DataStats(300, 60_000, 150_000, 512, [500] * 300)
    tiny = ModelShape(1_057_152, 128, 384, 4, 3000)
    few = make_plan(config(), DataStats(30, 600, 1500, 60, [50] * 30), 1_057_152, False, shape=tiny)
    assert values(few)["training.gradient_checkpointing"] is False  # frees a few MiB: not worth the compute
    auto = make_plan(config(), stats, tiny.params, has_eval_file=False, shape=tiny)
    item = next(i for i in auto.items if i.key == "training.gradient_checkpointing")
    assert item.source == "auto" and item.value == "selective" and "estimated peak" in item.reason
    kept = make_plan(config(training={"gradient_checkpointing": False}), stats, tiny.params, False, shape=tiny)
    assert values(kept)["training.gradient_checkpointing"] is False


def test_identity_replay_is_opt_in_and_shares_the_visit_budget() -> None:
    """Off unless set; when on, its samples count towards the epoch budget, self-replay and the steps."""
    stats = DataStats(30, 600, 1500, 40, [40] * 30)
    tiny = 1_057_152
    named = make_plan(config(identity={"name": "Nova", "author": "Acme Lab"}), stats, tiny, False)
    item = next(i for i in named.items if i.key == "data.identity_replay")
    assert item.value is False and item.source == "auto" and "opt-in" in item.reason
    assert values(named)["training.num_train_epochs"] == 100.0
    on = values(make_plan(config(identity={"name": "Nova"}, data={"train_file": "t.jsonl", "identity_replay": True}),
                          stats, tiny, False))
    # 26 training samples (4 held out) + at most 26 renamed answers: 3,000 visits over 52 samples
    assert on["data.identity_replay"] is True and on["training.num_train_epochs"] == 58.0
    # every epoch: 52 taught + 104 self-replay rows in batches of 8
    assert on["training.total_steps"] == 58 * 20
    unnamed = values(make_plan(config(data={"train_file": "t.jsonl", "identity_replay": True}), stats, tiny, False))
    assert unnamed["training.num_train_epochs"] == 100.0  # nothing to rename without identity.name


def test_unlikelihood_goes_with_a_new_name_and_the_base_anchor() -> None:
    """auto: on (1.0) for a new identity on an anchored fine-tune; off without a name or without the anchor;
    a set weight stays."""
    stats = DataStats(30, 600, 1500, 40, [40] * 30)
    named = make_plan(config(identity={"name": "Nova"}), stats, 1_057_152, False)
    item = next(i for i in named.items if i.key == "identity.unlikelihood")
    assert item.value == 1.0 and item.source == "auto" and "Nova" in item.reason
    unanchored = make_plan(config(identity={"name": "Nova"}, training={"base_anchor": 0}), stats, 1_057_152, False)
    item = next(i for i in unanchored.items if i.key == "identity.unlikelihood")
    assert item.value == 0.0 and "base_anchor is off" in item.reason
    unnamed = next(i for i in make_plan(config(), stats, 1_057_152, False).items if i.key == "identity.unlikelihood")
    assert unnamed.value == 0.0 and "not set" in unnamed.reason
    on = make_plan(config(identity={"name": "Nova", "unlikelihood": 1.0}), stats, 1_057_152, False)
    assert values(on)["identity.unlikelihood"] == 1.0


def test_base_anchor_is_on_for_small_adapter_runs_only() -> None:
    """auto: weight 1 below 1,000 samples with LoRA; off for large data and for methods without an adapter."""
    small = DataStats(30, 600, 1500, 40, [40] * 30)
    large = DataStats(5000, 100_000, 250_000, 40, [40] * 5000)
    tiny = 1_057_152
    assert values(make_plan(config(), small, tiny, False))["training.base_anchor"] == 1.0
    item = next(i for i in make_plan(config(), large, tiny, False).items if i.key == "training.base_anchor")
    assert item.value == 0.0 and "enough data" in item.reason
    full = next(i for i in make_plan(config(peft={"method": "full"}), small, tiny, False).items
                if i.key == "training.base_anchor")
    assert full.value == 0.0 and "no base model" in full.reason
    assert values(make_plan(config(training={"base_anchor": 0.25}), large, tiny, False))["training.base_anchor"] == 0.25


def _reason(plan, key: str) -> str:
    return next(item.reason for item in plan.items if item.key == key)


def test_eval_and_patience_reasons_state_the_run_they_describe() -> None:
    import re

    for n, eval_file in ((30, False), (200, False), (3000, True), (40_000, True)):
        stats = DataStats(n, n * 20, n * 50, 60, [50] * n)
        plan = make_plan(config(), stats, 1_000_000, has_eval_file=eval_file)
        got = values(plan)
        steps, every, patience = got["training.total_steps"], got["training.eval_steps"], got["training.patience"]
        said = re.search(r"every (\d+) step\(s\): (\d+) evaluations over (\d+) steps", _reason(plan, "training.eval_steps"))
        assert said, _reason(plan, "training.eval_steps")
        # Trainer evaluates at every multiple of eval_steps: steps // eval_steps times
        assert [int(x) for x in said.groups()] == [every, steps // every, steps]
        wait = re.search(r"(\d+) evaluations without .*: (\d+) steps at eval_steps (\d+), (\d+)% of the (\d+)-step run",
                         _reason(plan, "training.patience"))
        assert wait, _reason(plan, "training.patience")
        assert [int(x) for x in wait.groups()] == [patience, patience * every, every,
                                                   round(100 * min(patience * every, steps) / steps), steps]


def test_patience_reason_follows_an_explicit_eval_steps() -> None:
    plan = make_plan(config(training={"eval_steps": 7}), DataStats(300, 6000, 15000, 60, [50] * 300), 1_000_000, False)
    assert "35 steps at eval_steps 7" in _reason(plan, "training.patience")


def test_rank_reason_reports_a_consistent_pair_and_refuses_an_impossible_one() -> None:
    import pytest

    plan = make_plan(config(), DataStats(100, 15_000, 40_000, 60, [400] * 100), 1_000_000, False)
    assert "15,000 supervised tokens (of 40,000 tokens in the weighted training samples) < 20,000" in \
        _reason(plan, "peft.lora.r")
    with pytest.raises(ValueError, match="cannot exceed"):
        DataStats(1092, 164_309, 26_286)  # the pair issue 22 saw: every alpaca row counted, a tenth sampled


def _count_trained(rows) -> int:
    return sum(sum(1 for x in row["labels"] if x != -100) for row in rows)


def test_weighted_sources_count_only_the_sampled_supervised_tokens(tiny_model, tmp_path) -> None:
    import json

    from bench.encode_loop import encode_sources_loop
    from glmtune.config.schema import DataSource
    from glmtune.layout import get_layout
    from glmtune.models import load_tokenizer
    from glmtune.train.dataset import encode_sources

    small, big = tmp_path / "small.jsonl", tmp_path / "big.jsonl"
    small.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                                      {"role": "assistant", "content": "short"}]}) + "\n"
                             for i in range(10)))
    big.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"question {i}"},
                                                    {"role": "assistant", "content": "a long answer " * 20}]}) + "\n"
                           for i in range(100)))
    layout = get_layout(load_tokenizer(str(tiny_model)))
    args = dict(layout=layout, combine=True, max_length=512, rejects_path=None)
    full = encode_sources([DataSource(path=str(small)), DataSource(path=str(big))], cache=False, **args)
    sources = [DataSource(path=str(small)), DataSource(path=str(big), weight=0.1)]
    weighted = encode_sources(sources, cache=False, **args)
    loop = encode_sources_loop(sources, **args)
    assert len(weighted.rows) == 10 + 10
    counted = _count_trained(weighted.rows)
    assert weighted.result.trained_tokens == counted == loop.result.trained_tokens
    assert counted < full.result.trained_tokens / 5
    assert counted <= sum(weighted.lengths)
    doubled = encode_sources([DataSource(path=str(small), weight=2.0)], cache=False, **args)
    assert doubled.result.trained_tokens == _count_trained(doubled.rows) == 2 * _count_trained(
        encode_sources([DataSource(path=str(small))], cache=False, **args).rows)


def test_issue_22_identity_plus_a_tenth_of_alpaca_zh(tiny_model) -> None:
    """The reported case on the real files: supervised tokens follow weight 0.1, and the rank follows them."""
    from pathlib import Path

    import pytest

    from glmtune.config.schema import DataSource
    from glmtune.layout import get_layout
    from glmtune.models import load_tokenizer
    from glmtune.train.dataset import encode_sources
    from glmtune.train.plan_rules import rule_rank

    shared = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if not (shared / "alpaca_zh_demo.json").is_file():
        pytest.skip("shared data not available")
    layout = get_layout(load_tokenizer(str(tiny_model)))
    enc = encode_sources([DataSource(path=str(shared / "identity.json")),
                          DataSource(path=str(shared / "alpaca_zh_demo.json"), weight=0.1)],
                         layout=layout, combine=True, max_length=1025, rejects_path=None, cache=False,
                         values={"name": "Nova", "author": "Acme Lab"}, truncation="keep_recent")
    lengths = enc.lengths
    stats = DataStats(len(enc.rows), enc.result.trained_tokens, sum(lengths), max(lengths), lengths)
    assert stats.trained_tokens == _count_trained(enc.rows) < stats.total_tokens
    r, why = rule_rank(stats.trained_tokens, stats.total_tokens)
    assert f"{stats.trained_tokens:,} supervised tokens (of {stats.total_tokens:,} tokens" in why
    assert r == (8 if stats.trained_tokens < 20_000 else 16)
