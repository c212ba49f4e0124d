"""The benchmarks' tests use the suite's fixtures: one tiny GLM-4 per session and an isolated tokenize cache."""

from tests.conftest import tiny_model, tiny_tokenizer, tokenized_cache  # noqa: F401  (fixtures, found by name)
