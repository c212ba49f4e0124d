"""glmtune: fine-tune GLM-4-family chat models with the official token layout."""

__version__ = "0.1.0"
