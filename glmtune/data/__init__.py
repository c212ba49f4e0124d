"""Conversations: the data model, readers, validation and rejects."""
