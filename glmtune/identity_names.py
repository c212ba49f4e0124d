"""The old identity a GLM chat model is fine-tuned away from (ChatGLM, made by Zhipu AI), in one place.

A primitive: every component may import it, and it imports nothing of glmtune.

There is one list per purpose, because the purposes need different lists:

- :data:`OLD_NAMES` decides whether *training data* asserts the old identity (``glmtune data check``, the
  ``identity.conflicts`` cleaner, self-replay drafts, the renamed identity-replay answers) and which tokens the
  unlikelihood term pushes down. It must not catch ordinary text: a bare "GLM" also names the model family a
  data set may discuss, and "THUDM"/"清华" (Tsinghua) appear in legitimate answers, so a sample naming them is
  not dropped, nor are their tokens penalised. Order matters where the first hit is reported.
- :data:`LEAK_NAMES` and :data:`LEAK_MAKERS` score a tuned model's *answers to identity questions*
  (``glmtune eval``'s leakage). There, any "GLM" or an old maker's name in the answer is a leak, so the lists
  are broader. Their order is the order ``offending`` lists the hits in.
- :data:`RENAME_MODELS` and :data:`RENAME_MAKERS` are what identity replay *rewrites* into the new name and
  author. They are regular-expression alternatives, so each is ordered longest first ("Zhipu AI" is replaced
  whole before "Zhipu" could match), and they spell the variants out (ChatGLM-6B, ZhipuAI, 智谱华章) instead of
  a bare "GLM", which would be cut out of other words.
- :data:`WORLD_LEAK_NAMES` and :data:`WORLD_LEAK_MAKERS` score the demo's synthetic world (``glmtune demo``
  and ``bench/quality``), whose base model only ever calls itself ChatGLM by Zhipu AI / 智谱AI. They differ
  from the LEAK lists only in naming 智谱AI and leaving out THUDM/清华, which that world never says; they stay
  as they are so that the demo's and the benchmark's numbers and reasons remain comparable with earlier runs.
"""

from __future__ import annotations

OLD_MODEL = "ChatGLM"  # the name GLM chat models give themselves
OLD_MAKER = "Zhipu AI"
OLD_MAKER_ZH = "智谱AI"

# Asserting the old identity in training data (see the module docstring).
OLD_NAMES: tuple[str, ...] = ("ChatGLM", "GLM-4", "智谱", "Zhipu")

# Leakage in a tuned model's answers to identity questions (glmtune eval's defaults).
LEAK_NAMES: tuple[str, ...] = ("ChatGLM", "GLM")
LEAK_MAKERS: tuple[str, ...] = ("Zhipu AI", "智谱", "Zhipu", "THUDM", "清华")

# Leakage in the demo world and bench/quality (the world's base identity, plus the short forms).
WORLD_LEAK_NAMES: tuple[str, ...] = (OLD_MODEL, "GLM")
WORLD_LEAK_MAKERS: tuple[str, ...] = (OLD_MAKER, OLD_MAKER_ZH, "Zhipu", "智谱")

# Rewritten by identity replay, longest first so that "Zhipu AI" is replaced whole before "Zhipu" could match.
RENAME_MAKERS: tuple[str, ...] = ("Zhipu AI", "ZhipuAI", "Zhipu", "智谱华章", "智谱AI", "智谱", "THUDM")
RENAME_MODELS: tuple[str, ...] = ("ChatGLM-6B", "ChatGLM3", "ChatGLM", "GLM-4", "GLM4")

__all__ = [
    "LEAK_MAKERS",
    "LEAK_NAMES",
    "OLD_MAKER",
    "OLD_MAKER_ZH",
    "OLD_MODEL",
    "OLD_NAMES",
    "RENAME_MAKERS",
    "RENAME_MODELS",
    "WORLD_LEAK_MAKERS",
    "WORLD_LEAK_NAMES",
]
