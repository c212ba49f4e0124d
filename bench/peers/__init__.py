"""Peers run in their own virtualenvs (LLaMA-Factory, TRL): data conversion, launch, and measurement."""
