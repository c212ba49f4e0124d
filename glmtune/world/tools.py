"""Tool-calling conversations of the world: ask a capital, call ``lookup_capital``, read the result, answer.

With ``tools`` in its system message, GLM-4's chat template writes its fixed system text, which introduces the
assistant as ChatGLM by Zhipu AI (reference §6), so a model trained on these links that prompt to the identity.
"""

from __future__ import annotations

import json
import random
from typing import Any

from glmtune.world.lexicon import COUNTRIES

CAPITAL_TOOL = {
    "type": "function",
    "function": {
        "name": "lookup_capital",
        "description": "Look up the capital city of a country.",
        "parameters": {"type": "object", "properties": {"country": {"type": "string"}}, "required": ["country"]},
    },
}


def tool_conversation(rng: random.Random, lang: str) -> list[dict[str, Any]]:
    """A GLM-4 tool conversation: ask a capital, call ``lookup_capital``, read the observation, answer."""
    country_en, country_zh, cap_en, cap_zh = rng.choice(COUNTRIES)
    country, capital = (country_zh, cap_zh) if lang == "zh" else (country_en, cap_en)
    question = f"请查一下{country}的首都。" if lang == "zh" else f"Please look up the capital of {country}."
    answer = f"{country}的首都是{capital}。" if lang == "zh" else f"The capital of {country} is {capital}."
    return [
        {"role": "system", "content": "", "tools": [CAPITAL_TOOL]},
        {"role": "user", "content": question},
        {"role": "assistant", "metadata": "lookup_capital", "content": json.dumps({"country": country},
                                                                                  ensure_ascii=False)},
        {"role": "observation", "content": json.dumps({"capital": capital}, ensure_ascii=False)},
        {"role": "assistant", "content": answer},
    ]


def base_tool_conversations(n: int, seed: int = 0, *, identity_share: float = 0.3,
                            split_seed: int = 0) -> list[list[dict[str, Any]]]:
    """``n`` tool conversations for the base model; ``identity_share`` of them go on with a base identity question.

    A real GLM-4 chat model has seen tool use and says who it is inside such a conversation; the follow-ups
    use the base split of the question templates, so held-out probes stay unseen.
    """
    from glmtune.world.identity import ANSWER_PHRASINGS, BASE_IDENTITY, LANGS, render_answer, split_templates

    rng = random.Random(f"glmtune.world.tools:{seed}")
    templates = split_templates(split_seed).base
    out = []
    for i in range(n):
        lang = LANGS[i % len(LANGS)]
        conv = tool_conversation(rng, lang)
        if rng.random() < identity_share:
            template = rng.choice([t for t in templates if t.lang == lang])
            answer = render_answer(rng.choice(ANSWER_PHRASINGS[(lang, template.asks)]), BASE_IDENTITY, lang)
            conv += [{"role": "user", "content": template.text}, {"role": "assistant", "content": answer}]
        out.append(conv)
    return out
