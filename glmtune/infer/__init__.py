"""Inference: batched generation, predict, and the chat REPL."""
