"""Score one fine-tuned model: identity adoption/leakage, skill retention, stopping, loops, loss spikes."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.quality.depth import depth_probes, is_depth_tag
from bench.quality.persona import persona_probes
from bench.quality.variants import tool_probe_context
from glmtune.identity_names import WORLD_LEAK_MAKERS, WORLD_LEAK_NAMES
from glmtune.world import SkillItem, skill_correct

MAX_NEW_TOKENS = 48  # every world answer is far shorter: a reply that reaches this did not stop
SKILL_PROBES = 80
GENERAL_PROBES = 40
OLD_NAMES = WORLD_LEAK_NAMES  # (the world's base name, "GLM"): OLD_NAMES[0] is the base name
# Identity questions asked inside a tool conversation: no base or fine-tune set ever shows such a conversation,
# so they are reported per context as a diagnostic and kept out of the headline adoption / leakage. The depth
# probes (bench/quality/depth.py) are also kept out of the headline, which stays comparable with earlier runs.
DIAGNOSTIC_CONTEXTS = ("after_tool",)
OLD_AUTHORS = WORLD_LEAK_MAKERS


@dataclass
class ProbeSet:
    """What every contestant is asked: identity probes, exact-match skills and general prompts."""

    identity: list[list[dict[str, Any]]]
    identity_tags: list[str]
    skills: list[SkillItem]
    general: list[list[dict[str, Any]]]
    general_refs: list[str | None] = field(default_factory=list)
    extra: list[list[dict[str, Any]]] = field(default_factory=list)  # the persona's trait probes
    extra_tags: list[str] = field(default_factory=list)


def read_jsonl_messages(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a probes file: each a JSON object with ``messages`` (and, for --general, a ``reference``)."""
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise SystemExit(f"{path}:{number}: not valid JSON ({exc})") from None
        if not isinstance(row, dict) or not isinstance(row.get("messages"), list) or not row["messages"]:
            raise SystemExit(f"{path}:{number}: expected an object with a non-empty 'messages' list")
        rows.append(row)
    if not rows:
        raise SystemExit(f"{path}: no probes in the file")
    return rows


def probe_set(probes_file: str | None = None, general_file: str | None = None,
              depths: tuple[int, ...] = (0,), persona: bool = False) -> ProbeSet:
    """The bundled held-out probes, or the user's files in their place; plus depth and persona probes."""
    from glmtune.world import general_probes, identity_probes, skill_probes

    if probes_file:
        rows = read_jsonl_messages(probes_file)
        identity = [r["messages"] for r in rows]
        tags = [str(r.get("context", "file")) for r in rows]
    else:
        identity, tags = [], []
        for probe in identity_probes():
            identity.append(probe["messages"])
            tags.append(probe["context"])
            if probe["context"] == "alone":  # the same question inside a tool conversation (GLM-4's tool prompt)
                identity.append([*tool_probe_context(probe["lang"]), probe["messages"][-1]])
                tags.append("after_tool")
    if general_file:
        rows = read_jsonl_messages(general_file)
        general = [r["messages"] for r in rows]
        refs = [r.get("reference") for r in rows]
    else:
        rows = general_probes(GENERAL_PROBES)
        general, refs = [r["messages"] for r in rows], [r["reference"] for r in rows]
    single = [p for p, tag in zip(identity, tags) if tag in ("alone", "file")]
    deep, deep_tags = depth_probes(single, depths)
    identity, tags = identity + deep, tags + deep_tags
    extra, extra_tags = persona_probes(depths) if persona else ([], [])
    skills = skill_probes(SKILL_PROBES)
    if not general_file:  # the bundled general prompts are skill questions with a key: they count as skills too
        skills += [SkillItem(r["kind"], r["lang"], r["messages"][0]["content"], r["reference"], r["key"])
                   for r in rows]
    return ProbeSet(identity, tags, skills, general, refs, extra, extra_tags)



def generate_all(model_dir: str, adapter: str | None, tokenizer_dir: str | None, probes: ProbeSet) -> dict[str, Any]:
    """Greedy replies (no loop guard: loops are measured, not hidden) to every probe, grouped by kind."""
    from glmtune.infer.generate import generate_replies
    from glmtune.layout import get_layout
    from glmtune.models import load_model, load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir or model_dir)
    layout = get_layout(tokenizer)
    model = load_model(model_dir, adapter=adapter)
    skills = [[{"role": "user", "content": s.question}] for s in probes.skills]
    prompts = probes.identity + skills + probes.general + probes.extra
    gens = generate_replies(model, tokenizer, layout, prompts, max_new_tokens=MAX_NEW_TOKENS, batch_size=64,
                            loop_rule=None)
    a, b = len(probes.identity), len(probes.identity) + len(skills)
    c = b + len(probes.general)
    return {"identity": gens[:a], "skills": gens[a:b], "general": gens[b:c], "extra": gens[c:], "all": gens}


def score(gens: dict[str, Any], probes: ProbeSet, name: str, author: str,
          base_gens: dict[str, Any] | None = None) -> dict[str, Any]:
    """The benchmark's metrics from the replies (and the base model's replies, for retention)."""
    from glmtune.eval.degeneration import has_loop
    from glmtune.eval.identity import identity_scores
    from glmtune.eval.text_metrics import text_metrics

    identity = [g.text for g in gens["identity"]]
    headline = [t for t, k in zip(identity, probes.identity_tags)
                if k not in DIAGNOSTIC_CONTEXTS and not is_depth_tag(k)]
    ids = identity_scores(headline, name, author, old_names=OLD_NAMES, old_authors=OLD_AUTHORS)
    by_context: dict[str, dict[str, float]] = {}
    for tag in sorted(set(probes.identity_tags)):
        picked = [t for t, k in zip(identity, probes.identity_tags) if k == tag]
        s = identity_scores(picked, name, author, old_names=OLD_NAMES, old_authors=OLD_AUTHORS)
        by_context[tag] = {"adoption": s["adoption"], "leakage": s["leakage"]}
    skill_hits = [skill_correct(item, g.text) for item, g in zip(probes.skills, gens["skills"])]
    everything = gens["all"]
    stops = Counter(g.stop_token or "none (length)" for g in everything)
    out: dict[str, Any] = {
        "adoption": ids["adoption"],
        "leakage": ids["leakage"],
        "by_context": by_context,
        "skill_accuracy": sum(skill_hits) / max(1, len(skill_hits)),
        "stop_rate": sum(g.finish_reason == "stop" for g in everything) / max(1, len(everything)),
        "loop_rate": sum(has_loop(g.text) for g in everything) / max(1, len(everything)),
        "end_tokens": {k: round(v / len(everything), 4) for k, v in sorted(stops.items())},
        "examples": [{"q": p[-1]["content"], "a": t} for p, t in list(zip(probes.identity, identity))[:6]],
    }
    refs = [r for r in probes.general_refs if r]
    if refs and len(refs) == len(gens["general"]):
        out["general_vs_reference_rougeL"] = text_metrics([g.text for g in gens["general"]], refs)["rouge-l"]
    if base_gens is not None:
        base_skill = [skill_correct(item, g.text) for item, g in zip(probes.skills, base_gens["skills"])]
        before = sum(base_skill) / max(1, len(base_skill))
        out["skill_retention"] = out["skill_accuracy"] / before if before > 0 else None
        out["general_rougeL_vs_base"] = text_metrics([g.text for g in gens["general"]],
                                                     [g.text for g in base_gens["general"]])["rouge-l"]
    return out
