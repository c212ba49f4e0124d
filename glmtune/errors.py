"""User-facing errors: the CLI prints them without a traceback and exits with their code."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix (bad config, missing file, bad data); exit code 2."""

    exit_code = 2


class DataError(UserError):
    """Training data that cannot be used as given."""
