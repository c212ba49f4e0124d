"""Depth probes, the persona variant and the per-depth report (no training)."""

from __future__ import annotations

from bench.quality.depth import (
    depth_probes,
    depth_tag,
    filler_turns,
    name_diagnostics,
    old_identity_by_depth,
    tag_depth,
)
from bench.quality.depth_report import by_token_count, by_variant, render_depth_table, run_misses
from bench.quality.metrics import probe_set
from bench.quality.persona import (
    asserts_traits,
    has_sign_off,
    make_persona,
    persona_probes,
    persona_scores,
    persona_set,
    trait_questions,
)
from bench.quality.variants import make_variant


def test_filler_turns_alternate_and_match_language() -> None:
    turns = filler_turns(3, "zh", "0")
    assert [m["role"] for m in turns] == ["user", "assistant"] * 3
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in m["content"]) for m in turns[::2])
    assert turns == filler_turns(3, "zh", "0") and filler_turns(0, "en", "0") == []


def test_depth_probes_wrap_each_question() -> None:
    questions = [[{"role": "user", "content": "Who are you?"}],
                 [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "你是谁？"}]]
    probes, tags = depth_probes(questions, (0, 3, 8))
    assert tags == ["depth3", "depth3", "depth8", "depth8"]
    assert [len(p) for p in probes] == [7, 8, 17, 18]
    assert probes[1][0]["role"] == "system" and probes[3][-1]["content"] == "你是谁？"
    assert depth_tag(0) == "alone" and tag_depth("alone") == 0 and tag_depth("depth8") == 8
    assert tag_depth("after_skill") is None


def test_probe_set_adds_depths_outside_the_headline() -> None:
    plain = probe_set()
    deep = probe_set(depths=(0, 3, 8), persona=True)
    alone = plain.identity_tags.count("alone")
    assert deep.identity_tags.count("depth3") == deep.identity_tags.count("depth8") == alone == 24
    assert len(deep.identity) == len(plain.identity) + 2 * alone
    assert len(deep.extra) == len(deep.extra_tags) == 3 * len(trait_questions("heldout"))


def test_persona_set_teaches_traits_and_sign_off_only_from_finetune_questions() -> None:
    persona = make_persona("Draskou", "Radria Studio", 0)
    assert persona == make_persona("Draskou", "Radria Studio", 0) and len(persona.traits) == 3
    convs = persona_set(persona, 0)
    assert convs == make_variant("persona", "Draskou", "Radria Studio", 0) and len(convs) == 42
    replies = [c[-1]["content"] for c in convs]
    assert all(has_sign_off(persona, r) and "Draskou" in r for r in replies)
    heldout = {q for q, _ in trait_questions("heldout")}
    assert not heldout & {c[0]["content"] for c in convs}
    assert sum(asserts_traits(persona, r, 3) for r in replies) == 12


def test_persona_probes_and_scores() -> None:
    probes, tags = persona_probes((0, 3, 8))
    assert sorted(set(tags)) == ["trait:alone", "trait:depth3", "trait:depth8"]
    persona = make_persona("Draskou", "Radria Studio", 0)
    en = [w for w, _ in persona.traits]
    good = f"I am Draskou: {en[0]}, {en[1]} and {en[2]}. {persona.sign('en')}"
    scores = persona_scores(persona, [("alone", good), ("depth8", "I am ChatGLM.")],
                            [("trait:alone", good), ("trait:depth8", "I am ChatGLM.")])
    assert scores["alone"] == {"habit": 1.0, "traits": 1.0, "trait_habit": 1.0, "trait_adoption": 1.0}
    assert scores["depth8"]["habit"] == 0.0 and scores["depth8"]["traits"] == 0.0


def test_name_diagnostics_and_base_identity_by_depth() -> None:
    texts = ["I am Draskou.", "I am Drasen, by Radria.", "I am ChatGLM."]
    tags = ["alone", "depth8", "depth8"]
    diag = name_diagnostics(texts, tags, "Draskou")
    assert diag["0"]["misses"] == 0 and diag["8"] == {"misses": 2, "starts_name": 1,
                                                     "examples": ["I am Drasen, by Radria."]}
    assert old_identity_by_depth(texts, tags, "ChatGLM") == {"0": 0.0, "8": 0.5}


def test_depth_report_lists_misses() -> None:
    run = {"variant": "n30", "contestant": "glmtune", "name": "Draskou", "author": "Radria Studio", "form": "latin",
           "name_tokens": 5, "by_depth": {"0": {"adoption": 0.95, "leakage": 0.0}, "8": {"adoption": 0.5,
                                                                                      "leakage": 0.2}},
           "skill_retention": 1.0, "stop_rate": 1.0, "loop_rate": 0.0, "steps": 400,
           "persona": {"alone": {"habit": 1.0, "traits": 0.5}, "after_skill": {"habit": 0.1}}}
    assert run_misses(run) == ["adoption@8 0.50", "leakage@8 0.20", "traits@0 0.50"]
    assert run_misses({**run, "loop_rate": 0.004, "persona": {}})[-1] == "loop 0.004"
    table = render_depth_table([run], (0, 8), "Per depth:")
    assert "0.95 / 0.50" in table and "adoption@8 0.50" in table and "1.00 / -" in table
    assert "| glmtune | 5 | 1 | 0.95 / 0.50 |" in by_token_count([run], (0, 8))
    good = {**run, "by_depth": {"0": {"adoption": 0.95, "leakage": 0.0}, "8": {"adoption": 0.9, "leakage": 0.0}},
            "persona": {}}
    assert "| n30 | glmtune | 2 | 0.95 / 0.70 | 0.00 / 0.10 | 1.00 | 1.00 | 0.000 | 1 of 2 |" in by_variant(
        [run, good], (0, 8))


def test_depth_copies_add_one_deep_copy_per_sample() -> None:
    from bench.quality.augment import with_depth_copies

    clean = make_variant("n30", "Draskou", "Radria Studio", 0)
    convs = make_variant("n30depth", "Draskou", "Radria Studio", 0)
    assert convs == with_depth_copies(clean, 0) and len(convs) == 60
    deep = [c for c in convs if len(c) > 2]
    assert len(deep) == 30 and {(len(c) - 2) // 2 for c in deep} == set(range(1, 9))
    assert all(c[-2:] in clean for c in deep)  # the identity exchange itself is unchanged
    persona = make_variant("personadepth", "Draskou", "Radria Studio", 0)
    assert len(persona) == 84 and sum(len(c) > 2 for c in persona) == 42


def test_peer_lr_labels_and_glmtune_overrides() -> None:
    from bench.quality.__main__ import contestant_labels, parse_args
    from bench.quality.contestants import apply_overrides, peer_label, split_label

    assert peer_label("trl", 1.0) == "trl" and peer_label("trl", 3.0) == "trl-x3"
    assert split_label("trl-x3") == ("trl", 3.0) and split_label("glmtune") == ("glmtune", 1.0)
    args = parse_args(["--contestants", "glmtune", "trl", "--peer-lr-scales", "1", "3", "10"])
    assert contestant_labels(args) == ["glmtune", "trl", "trl-x3", "trl-x10"]
    assert args.name is None and args.fixed_row and args.depths == [0, 3, 8]
    cfg = apply_overrides({"training": {"seed": 0}}, ["training.base_anchor=0", "identity.unlikelihood=0.5"])
    assert cfg == {"training": {"seed": 0, "base_anchor": 0}, "identity": {"unlikelihood": 0.5}}
