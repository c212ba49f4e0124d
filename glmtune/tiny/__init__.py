"""Tiny, offline, randomly initialised chat models with real special tokens and chat templates."""
