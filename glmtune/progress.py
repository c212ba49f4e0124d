"""Progress bars for long work outside the Trainer (evaluation, self-replay drafting, tokenizing): stderr, rank 0."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tqdm.auto import tqdm

from glmtune.log import is_main_process


def progress(total: int | None, desc: str, unit: str = "it") -> tqdm:
    """A tqdm bar on stderr like the training bar; disabled (a no-op) on every rank but 0."""
    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, disable=not is_main_process(), leave=False)


@contextmanager
def generation_progress(model: Any, total: int | None, desc: str, unit: str = "reply") -> Iterator[tqdm]:
    """Count the rows of every ``model.generate`` call made inside the block on a progress bar.

    The generation code stays as it is: the model's ``generate`` is wrapped for the block's duration only.
    """
    bar = progress(total, desc, unit)
    original = model.__dict__.get("generate")
    inner = model.generate

    def generate(*args: Any, **kwargs: Any) -> Any:
        out = inner(*args, **kwargs)
        ids = kwargs.get("input_ids", args[0] if args else None)
        bar.update(int(ids.shape[0]) if hasattr(ids, "shape") else 1)
        return out

    model.generate = generate
    try:
        yield bar
    finally:
        if original is None:
            del model.generate
        else:
            model.generate = original
        bar.close()
