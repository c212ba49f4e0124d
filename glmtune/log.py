"""glmtune's logging: module loggers under ``glmtune``, one rank-0 filter, and the CLI's plain terminal handler.

Every module logs through ``log = logging.getLogger(__name__)`` (children of ``logger``). A library caller sees
only what its own logging configuration shows; ``glmtune`` (the CLI) calls ``setup_logging`` once, which prints
each message as a plain line on stdout, on rank 0 only, the way the commands always printed.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger("glmtune")


def is_main_process() -> bool:
    """True on rank 0 (or without a distributed launcher): the one rule for who prints and who writes files."""
    return int(os.environ.get("RANK", "0")) == 0


class RankZeroFilter(logging.Filter):
    """Drop every record on processes other than rank 0, so a multi-process run prints each message once."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep ``record`` on rank 0 only."""
        return is_main_process()


class ConsoleHandler(logging.Handler):
    """Plain ``%(message)s`` lines on ``sys.stdout`` (or ``sys.stderr``), looked up at each record."""

    def __init__(self, stderr: bool = False) -> None:
        super().__init__()
        self.stderr = stderr
        self.setFormatter(logging.Formatter("%(message)s"))
        self.addFilter(RankZeroFilter())

    def emit(self, record: logging.LogRecord) -> None:
        """Write one line; the stream is read now, so redirections made after setup (pytest's capture) apply."""
        try:
            stream = sys.stderr if self.stderr else sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # logging's contract: a broken stream is reported, never raised into the caller
            self.handleError(record)


class _ListHandler(logging.Handler):
    """Append each message to a list."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines
        self.setFormatter(logging.Formatter("%(message)s"))
        self.addFilter(RankZeroFilter())

    def emit(self, record: logging.LogRecord) -> None:
        """Append the formatted message."""
        self.lines.append(self.format(record))


# bitsandbytes (imported by peft when installed, for QLoRA) tries to fetch an optional CPU kernel from the hub
# at import and warns twice when it cannot; glmtune runs offline and its 4-bit path does not need that kernel
QUIET_AT_IMPORT = ("bitsandbytes", "kernels")


def setup_logging(verbose: bool = False, stderr: bool = False) -> logging.Handler:
    """Print glmtune's messages as plain lines on stdout (``stderr``: there), rank 0 only; calling again replaces it."""
    for handler in [h for h in logger.handlers if isinstance(h, ConsoleHandler)]:
        logger.removeHandler(handler)
    handler = ConsoleHandler(stderr)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in QUIET_AT_IMPORT:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.ERROR)
    return handler


@contextmanager
def capture(lines: list[str]) -> Iterator[list[str]]:
    """Collect every glmtune message logged inside the block into ``lines``, and show it nowhere else."""
    saved = logger.handlers[:], logger.propagate, logger.level
    logger.handlers = [_ListHandler(lines)]
    logger.propagate = False
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.handlers, logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])
