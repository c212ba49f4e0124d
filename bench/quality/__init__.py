"""Identity-shift quality benchmark: glmtune vs the official recipe, LLaMA-Factory and TRL on one tiny world."""
