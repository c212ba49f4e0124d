"""Start a trainer entry point with the shared instrumentation (label-token count) installed.

    python launch.py STATS_JSON ENTRY [ARGV...]

ENTRY is ``package.module:function`` (called with ``sys.argv = ARGV``) or a path to a script (run as
``__main__``). The same count runs in every contestant: ``Trainer.training_step`` is wrapped to add up the
labels that enter the loss, ``labels[..., 1:] != -100`` (the first position is never a target after the
causal shift), and the input tokens that are not padding (the attention mask's sum, or every token of a
packed row that has none). The sums stay on the device until the process exits, so they add no host sync to
the step. The peak CUDA memory allocated is recorded too when a GPU was used.
"""

from __future__ import annotations

import atexit
import importlib
import json
import runpy
import sys


def install(stats_path: str) -> None:
    """Wrap ``Trainer.training_step`` and write the totals to ``stats_path`` at exit."""
    from transformers import Trainer

    counts: list = []
    inputs_seen: list = []
    original = Trainer.training_step

    def training_step(self, model, inputs, *args, **kwargs):  # type: ignore[no-untyped-def]
        labels = inputs.get("labels") if hasattr(inputs, "get") else None
        if labels is not None:
            counts.append((labels[..., 1:] != -100).sum())
            mask = inputs.get("attention_mask")
            inputs_seen.append(mask.sum() if mask is not None else inputs["input_ids"].numel())
        return original(self, model, inputs, *args, **kwargs)

    Trainer.training_step = training_step  # type: ignore[method-assign]

    def write() -> None:
        import torch

        stats = {"trained_tokens": int(sum(int(c) for c in counts)), "micro_batches": len(counts),
                 "input_tokens": int(sum(int(c) for c in inputs_seen))}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            stats["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        with open(stats_path, "w") as fh:
            json.dump(stats, fh)

    atexit.register(write)


def main() -> None:
    """Install the count, then hand over to the entry point."""
    stats_path, entry, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    install(stats_path)
    if ":" in entry:
        module, function = entry.split(":")
        sys.argv = [module, *argv]
        result = getattr(importlib.import_module(module), function)()
        sys.exit(result if isinstance(result, int) else 0)
    sys.argv = [entry, *argv]
    runpy.run_path(entry, run_name="__main__")


if __name__ == "__main__":
    main()
