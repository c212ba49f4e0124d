"""The quality benchmark's fine-tune sets, scoring and report (the full run is `python -m bench.quality`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.quality.metrics import probe_set, read_jsonl_messages, score
from bench.quality.report import aggregate, goal_check, render
from bench.quality.variants import make_variant
from glmtune.data.read import read_any
from glmtune.infer.generate import Generation
from glmtune.world import SkillItem


def test_variant_sizes_and_contents(tmp_path: Path) -> None:
    sizes = {v: len(make_variant(v, "Nova", "Acme Lab", 0)) for v in ("n10", "n30", "n90", "noisy", "tool")}
    assert sizes == {"n10": 10, "n30": 30, "n90": 90, "noisy": 41, "tool": 50}
    noisy = make_variant("noisy", "Nova", "Acme Lab", 0)
    replies = [m["content"] for c in noisy for m in c if m["role"] == "assistant"]
    assert sum("ChatGLM" in r for r in replies) == 2
    assert sum(r != r.strip() for r in replies) >= 5  # whitespace damage
    stripped = [json.dumps([m["content"].strip() for m in c]) for c in noisy]
    assert len(stripped) - len(set(stripped)) >= 6  # 20% duplicates of the 30 clean samples
    tool = make_variant("tool", "Nova", "Acme Lab", 1)
    calls = [c for c in tool if c[0].get("tools")]
    assert len(calls) == 20 and all(c[2]["metadata"] == "lookup_capital" for c in calls)
    assert make_variant("n30", "Nova", "Acme Lab", 0) != make_variant("n30", "Nova", "Acme Lab", 1)
    path = tmp_path / "tool.jsonl"
    path.write_text("\n".join(json.dumps({"messages": c}, ensure_ascii=False) for c in tool), encoding="utf-8")
    read = read_any(str(path))
    assert len(read.conversations) == 50 and not read.rejected_records  # glmtune reads it as GLM-4 data
    with pytest.raises(ValueError, match="unknown variant"):
        make_variant("n31", "Nova", "Acme Lab", 0)


def test_bundled_probes_include_tool_context() -> None:
    probes = probe_set()
    assert len(probes.identity) == len(probes.identity_tags)
    assert {"alone", "after_skill", "after_tool"} <= set(probes.identity_tags)
    tool = probes.identity[probes.identity_tags.index("after_tool")]
    assert tool[0]["tools"] and tool[-1]["role"] == "user"
    assert len(probes.skills) == 120 and len(probes.general) == len(probes.general_refs) == 40


def test_probe_files_replace_bundled_sets_and_bad_lines_name_file_and_line(tmp_path: Path) -> None:
    probes = tmp_path / "p.jsonl"
    probes.write_text('{"messages": [{"role": "user", "content": "Who made you?"}]}\n', encoding="utf-8")
    general = tmp_path / "g.jsonl"
    general.write_text('{"messages": [{"role": "user", "content": "1+1?"}], "reference": "2"}\n', encoding="utf-8")
    ps = probe_set(str(probes), str(general))
    assert [p[-1]["content"] for p in ps.identity] == ["Who made you?"] and ps.general_refs == ["2"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "ok"}]}\n{broken\n', encoding="utf-8")
    with pytest.raises(SystemExit, match=r"bad.jsonl:2: not valid JSON"):
        read_jsonl_messages(bad)
    empty = tmp_path / "e.jsonl"
    empty.write_text('{"messages": []}\n', encoding="utf-8")
    with pytest.raises(SystemExit, match=r"e.jsonl:1: expected an object"):
        read_jsonl_messages(empty)


def _gens(texts: list[str], finish: str = "stop") -> list[Generation]:
    return [Generation(t, finish, 5, "<|user|>" if finish == "stop" else None) for t in texts]


def test_score_counts_adoption_leakage_retention_stops_and_loops() -> None:
    from bench.quality.metrics import ProbeSet

    skills = [SkillItem("arithmetic", "en", "2+3?", "5", "5"), SkillItem("capital", "en", "France?", "Paris", "Paris")]
    probes = ProbeSet(identity=[[{"role": "user", "content": "q"}]] * 4, identity_tags=["alone"] * 4, skills=skills,
                      general=[[{"role": "user", "content": "g"}]], general_refs=[None])
    base = {"identity": _gens(["I am ChatGLM."] * 4), "skills": _gens(["It is 5.", "Paris."]),
            "general": _gens(["hello there"])}
    base["all"] = base["identity"] + base["skills"] + base["general"]
    after = {"identity": _gens(["I am Nova.", "I am Nova by Acme Lab.", "I am ChatGLM.", "Nova, not Zhipu AI"]),
             "skills": _gens(["It is 5.", "Rome."]),
             "general": _gens(["ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha"], "length")}
    after["all"] = after["identity"] + after["skills"] + after["general"]
    m = score(after, probes, "Nova", "Acme Lab", base)
    assert m["adoption"] == 0.75 and m["leakage"] == 0.5
    assert m["skill_accuracy"] == 0.5 and m["skill_retention"] == 0.5
    assert m["stop_rate"] == pytest.approx(6 / 7) and m["loop_rate"] == pytest.approx(1 / 7)
    assert m["end_tokens"]["none (length)"] == pytest.approx(round(1 / 7, 4))


def _run(variant: str, contestant: str, seed: int, **metrics: float) -> dict:
    base = {"adoption": 1.0, "leakage": 0.0, "skill_retention": 1.0, "general_rougeL_vs_base": 90.0,
            "stop_rate": 1.0, "loop_rate": 0.0, "max_spike": 1.2, "steps": 100, "wall_s": 10.0}
    return {"variant": variant, "contestant": contestant, "seed": seed, **base, **metrics}


def test_aggregate_goal_check_and_render() -> None:
    runs = [_run("n30", "glmtune", 0), _run("n30", "glmtune", 1, adoption=0.8),
            _run("n30", "official", 0, adoption=0.95, leakage=0.2), _run("n30", "official", 1, adoption=0.95)]
    agg = aggregate(runs)
    assert agg["n30"]["glmtune"]["adoption"]["mean"] == pytest.approx(0.9)
    assert agg["n30"]["glmtune"]["adoption"]["sd"] == pytest.approx(0.1414, abs=1e-3)
    goals = {g["metric"]: g for g in goal_check(agg, ("n30",))}
    assert goals["adoption"]["met"] is True and goals["adoption"]["beaten_by"] == ["official"]
    assert goals["leakage"]["met"] is True and goals["leakage"]["beaten_by"] == []
    md = render(agg, list(goals.values()), "### header")
    assert "| glmtune | 0.90 ± 0.14 |" in md and "| n30 | adoption | 0.900 | >= 0.9 | yes | official |" in md
    failing = goal_check(aggregate([_run("tool", "glmtune", 0, stop_rate=0.9)]), ("tool",))
    assert {g["metric"]: g["met"] for g in failing}["stop_rate"] is False
