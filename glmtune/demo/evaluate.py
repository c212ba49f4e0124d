"""Score a demo model on held-out identity probes and held-out skill probes; pick the rows the table shows."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from glmtune.identity_names import WORLD_LEAK_MAKERS, WORLD_LEAK_NAMES
from glmtune.world import (
    BASE_NAME,
    SkillItem,
    general_probes,
    skill_correct,
    skill_probes,
)
from glmtune.world import identity_probes as world_identity_probes

MAX_NEW_TOKENS = 48  # every world answer is far shorter, so a reply that hits this did not stop
SKILL_PROBES = 60
GENERAL_PROBES = 40
TABLE_IDENTITY_ROWS = 8
TABLE_SKILL_KINDS = ("arithmetic", "capital", "translate")
TABLE_SKILL_PER_KIND = 2


@dataclass
class Evaluation:
    """Replies of one model to every probe, and the numbers the demo reports."""

    identity_answers: list[str]
    skill_answers: list[str]
    general_answers: list[str]
    adoption: float
    leakage: float
    base_identity: float
    skill_accuracy: float
    skill_by_kind: dict[str, float]
    general_accuracy: float
    stop_rate: float
    stop_tokens: dict[str, float]
    offending: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The numbers only (no answers), for ``demo_results.json``."""
        return {
            "adoption": self.adoption,
            "leakage": self.leakage,
            "base_identity": self.base_identity,
            "skill_accuracy": self.skill_accuracy,
            "skill_by_kind": self.skill_by_kind,
            "general_accuracy": self.general_accuracy,
            "stop_rate": self.stop_rate,
            "stop_tokens": self.stop_tokens,
        }


def identity_set() -> list[dict[str, Any]]:
    """The held-out identity probes: every held-out template alone and after a skill turn."""
    return world_identity_probes()


def skill_set(n: int = SKILL_PROBES) -> list[SkillItem]:
    """Held-out skill probes (unseen arithmetic problems, unseen phrasings), balanced by kind and language."""
    return skill_probes(n)


def general_set(n: int = GENERAL_PROBES) -> list[SkillItem]:
    """In-distribution skill questions (training phrasings and problems), balanced by kind and language."""
    return [SkillItem(p["kind"], p["lang"], p["messages"][0]["content"], p["reference"], p["key"])
            for p in general_probes(n)]


def _accuracy(items: list[SkillItem], answers: list[str]) -> tuple[float, dict[str, float]]:
    by_kind: dict[str, list[bool]] = {}
    for item, answer in zip(items, answers):
        by_kind.setdefault(item.kind, []).append(skill_correct(item, answer))
    total = sum(sum(v) for v in by_kind.values()) / max(1, len(items))
    return total, {k: sum(v) / len(v) for k, v in sorted(by_kind.items())}


def evaluate(model: Any, tokenizer: Any, layout: Any, name: str, author: str, skill_n: int = SKILL_PROBES) -> Evaluation:
    """Generate greedily for all probes and score identity adoption/leakage, skills and stopping."""
    from glmtune.eval.identity import identity_scores
    from glmtune.infer.generate import generate_replies

    probes = identity_set()
    skills, general = skill_set(skill_n), general_set()
    prompts = [p["messages"] for p in probes] + [[{"role": "user", "content": s.question}] for s in skills + general]
    gens = generate_replies(model, tokenizer, layout, prompts, max_new_tokens=MAX_NEW_TOKENS, batch_size=64)
    texts = [g.text for g in gens]
    answers = texts[: len(probes)]
    skill_answers = texts[len(probes): len(probes) + len(skills)]
    general_answers = texts[len(probes) + len(skills):]
    scores = identity_scores(answers, name, author, old_names=WORLD_LEAK_NAMES, old_authors=WORLD_LEAK_MAKERS)
    base_identity = sum(BASE_NAME.casefold() in a.casefold() for a in answers) / max(1, len(answers))
    skill_accuracy, skill_by_kind = _accuracy(skills, skill_answers)
    stops = Counter(g.stop_token or "none (length)" for g in gens)
    return Evaluation(
        identity_answers=answers,
        skill_answers=skill_answers,
        general_answers=general_answers,
        adoption=scores["adoption"],
        leakage=scores["leakage"],
        base_identity=base_identity,
        skill_accuracy=skill_accuracy,
        skill_by_kind=skill_by_kind,
        general_accuracy=_accuracy(general, general_answers)[0],
        stop_rate=sum(g.finish_reason == "stop" for g in gens) / max(1, len(gens)),
        stop_tokens={k: v / len(gens) for k, v in sorted(stops.items())},
        offending=scores["offending"],
    )


def table_identity_rows(n: int = TABLE_IDENTITY_ROWS) -> list[int]:
    """Indices of ``identity_set()`` for the table: both languages, alone and after a skill turn, mixed asks."""
    probes = identity_set()
    cells = [(lang, ctx) for lang in ("zh", "en") for ctx in ("alone", "after_skill")]
    picked: list[int] = []
    used_asks: dict[tuple[str, str], set[str]] = {c: set() for c in cells}
    while len(picked) < n:
        before = len(picked)
        for cell in cells:
            if len(picked) >= n:
                break
            for i, p in enumerate(probes):
                if i in picked or (p["lang"], p["context"]) != cell or p["asks"] in used_asks[cell]:
                    continue
                picked.append(i)
                used_asks[cell].add(p["asks"])
                break
        if len(picked) == before:  # every ask used in every cell: allow repeats
            used_asks = {c: set() for c in cells}
    return picked


def table_general_rows() -> list[int]:
    """Indices of ``general_set()`` for the table: two of each of arithmetic, capital and translation."""
    picked: list[int] = []
    items = general_set()
    for kind in TABLE_SKILL_KINDS:
        langs_seen: list[str] = []
        for i, item in enumerate(items):
            if item.kind == kind and item.lang not in langs_seen:
                picked.append(i)
                langs_seen.append(item.lang)
            if len(langs_seen) == TABLE_SKILL_PER_KIND:
                break
    return picked


def probe_label(probe: dict[str, Any], width: int = 18) -> str:
    """How a probe reads in the table: the question, prefixed by the skill turn it follows, if any."""
    if probe["context"] == "after_skill":
        first = probe["messages"][0]["content"]
        short = first if len(first) <= width else first[: width - 1] + "…"
        return f"[after “{short}”] {probe['question']}"
    return probe["question"]
