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
QUALITY_BASE = BaseParams(conversations=60_000, identity_keep=0.35, documents=6_000, batch_size=8,
                          tool_conversations=600, max_length=512)
# Issue 25: QUALITY_BASE packs its chats into 128 tokens, so an identity question after 8 unrelated turns (~200
# tokens) lies beyond any position it trained a chat at, and the base itself then says ChatGLM in only 0.67 of the
# depth-8 probes (0.96 at depths 0 and 3). The same base with 256-token chats, for the depth measurements.
LONG_CHAT_BASE = dataclasses.replace(QUALITY_BASE, pack_tokens=256)
# 256-token chats halve the optimiser steps at batch 8 (1,008 against 1,716) and skills fell to 0.18; batch 4 gives
# back the steps with the same tokens.
LONG_CHAT_BASE_B4 = dataclasses.replace(LONG_CHAT_BASE, batch_size=4)


def quality_base(out: str | Path, params: BaseParams = QUALITY_BASE, rebuild: bool = False) -> Path:
    """Return the benchmark's base model folder under ``out``, building it unless a matching build is cached."""
    return build_base(Path(out), params, rebuild=rebuild)


if __name__ == "__main__":
    import sys

    from glmtune.log import setup_logging

    setup_logging()
    # python -m bench.quality.base [OUT] [long|long4]: LONG_CHAT_BASE or LONG_CHAT_BASE_B4 instead of QUALITY_BASE
    kind = sys.argv[2] if len(sys.argv) > 2 else ""
    params = {"long": LONG_CHAT_BASE, "long4": LONG_CHAT_BASE_B4}.get(kind, QUALITY_BASE)
    quality_base(sys.argv[1] if len(sys.argv) > 1 else "bench/out/quality", params)
