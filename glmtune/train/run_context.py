"""What every phase of a run shares: its output folder, who writes (rank 0), precision and resume point."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glmtune.config.schema import GlmtuneConfig
from glmtune.train.precision import Precision


@dataclass
class RunContext:
    """The run's output folder, the checkpoint it resumes from, its precision, and who writes (rank 0)."""

    config: GlmtuneConfig
    out: Path
    main: bool
    precision: Precision
    fingerprint: dict[str, Any]
    checkpoint: str | None = None
    started: float = field(default_factory=time.perf_counter)

    @property
    def writes(self) -> Path | None:
        """The output folder on rank 0, None on the other ranks (which write nothing)."""
        return self.out if self.main else None
