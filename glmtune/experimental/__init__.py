"""Code outside glmtune's core: kept working and tested, but no default GPU run depends on it.

- :mod:`glmtune.experimental.cpu_kernels`: CPU-only speed code that replaces PEFT's LoRA forward
  (``training.fused_lora``). Under bf16 autocast on a GPU it steps aside.

Core modules do not import from here; the training recipe calls each package's one entry point.
"""
