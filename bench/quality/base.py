"""The benchmark's base model: a tiny GLM-4 warmed up on the synthetic world, bigger than the demo's."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from glmtune.demo.base import BaseParams, build_base

# The lessons' base (identity 1.00, skills 0.80) saw ~60k conversations (~2.4M tokens). The demo's 24k-conversation
# base learns the identity but almost no skills, which leaves retention undefined, so the benchmark's base is bigger.
# Batch 8 instead of 16 (the same tokens in twice the steps) took skills on the 120 probes from 0.12 to 0.48 (copying,
# which translation and arithmetic answers need, 0.02 -> 0.50 in-distribution). 600 GLM-4 tool-calling chats, 30%
# with a base identity question after the tool call, make the base a tool user like the real GLM-4: it then answers
# "ChatGLM" inside a tool conversation (1.00, from 0.08 without them), so the tool variant tests what it should
# (bench/RESULTS.md, session 4).
ISSUE_25_FIRST_BASE = BaseParams(conversations=60_000, identity_keep=0.35, documents=6_000, batch_size=8,
                                 tool_conversations=600, max_length=512)
# That base (bench/HISTORY.md, 2026-12-05) measured two things badly. Its chats were packed into 128 tokens, so an
# identity question after 8 unrelated turns (~200 tokens) lay beyond any position it trained a chat at: it said
# ChatGLM in only 0.67 of the depth-8 probes itself. And its skill answers were fragile: LLaMA-Factory at its
# documented rate learned nothing on n30 and still lost 22-29% of them, so retention could not tell the methods
# apart. The same world in 256-token chats, trained for 3 epochs (3,024 steps, ~22 min on one core), holds its
# identity at every depth (1.00 / 0.96 / 1.00 at depths 0 / 3 / 8), answers 0.63 of the skill questions, and
# LLaMA-Factory's runs that learn nothing keep 0.93-1.05 of them (bench/RESULTS.md, 2026-12-06).
QUALITY_BASE = dataclasses.replace(ISSUE_25_FIRST_BASE, pack_tokens=256, epochs=3.0)
# Tried on the way (bench/HISTORY.md): 256-token chats for 1 epoch at batch 8 (skills 0.18) or batch 4 (0.22), and
# 2 epochs at batch 4 (skills 0.65, but a LLaMA-Factory run that learned nothing kept only 0.87).
LONG_CHAT_BASE = dataclasses.replace(ISSUE_25_FIRST_BASE, pack_tokens=256)
LONG_CHAT_BASE_B4 = dataclasses.replace(LONG_CHAT_BASE, batch_size=4)
EARLIER_BASES = {"first": ISSUE_25_FIRST_BASE, "long": LONG_CHAT_BASE, "long4": LONG_CHAT_BASE_B4,
                 "long4x2": dataclasses.replace(LONG_CHAT_BASE_B4, epochs=2.0)}


def quality_base(out: str | Path, params: BaseParams = QUALITY_BASE, rebuild: bool = False) -> Path:
    """Return the benchmark's base model folder under ``out``, building it unless a matching build is cached."""
    return build_base(Path(out), params, rebuild=rebuild)


if __name__ == "__main__":
    import sys

    from glmtune.log import setup_logging

    setup_logging()
    # python -m bench.quality.base [OUT] [first|long|long4|long4x2]: one of the earlier bases instead of QUALITY_BASE
    kind = sys.argv[2] if len(sys.argv) > 2 else ""
    if kind and kind not in EARLIER_BASES:
        raise SystemExit(f"unknown base {kind!r}: expected one of {', '.join(EARLIER_BASES)}")
    params = EARLIER_BASES.get(kind, QUALITY_BASE)
    quality_base(sys.argv[1] if len(sys.argv) > 1 else "bench/out/quality", params)
