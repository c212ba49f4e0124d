"""The run folder's ``README.md``: the model card ``glmtune export`` writes, for the adapter itself.

PEFT's ``save_pretrained`` leaves its empty model-card template in the run folder. This replaces it with
``glmtune.export.merge.model_card`` (base model, training-data hashes, resolved plan, eval metrics when
``RUN/eval/metrics.json`` exists), plus how to load the adapter. ``glmtune eval --out RUN/eval`` rewrites it.
"""

from __future__ import annotations

import json
from pathlib import Path

CARD = "README.md"
DTYPE_NAMES = {"F32": "fp32", "BF16": "bf16", "F16": "fp16"}


def weights_dtype(run_dir: Path) -> str:
    """The dtype of the saved weights (first tensor of the adapter or model file), or ``unknown``."""
    from safetensors import safe_open

    for name in ("adapter_model.safetensors", "model.safetensors"):
        path = run_dir / name
        if path.is_file():
            with safe_open(str(path), "pt") as fh:
                for key in fh.keys():
                    dtype = fh.get_slice(key).get_dtype()
                    return DTYPE_NAMES.get(dtype, dtype.lower())
    return "unknown"


def describe_method(run_dir: Path, method: str) -> str:
    """What the folder holds, in words, e.g. ``LoRA adapter (r 8, alpha 16 on q_proj, v_proj)``."""
    config = run_dir / "adapter_config.json"
    if config.is_file():
        cfg = json.loads(config.read_text(encoding="utf-8"))
        kind = str(cfg.get("peft_type", method)).upper()
        if kind == "LORA":
            targets = cfg.get("target_modules") or []
            targets = ", ".join(sorted(targets)) if isinstance(targets, list) else str(targets)
            return f"LoRA adapter (r {cfg.get('r')}, alpha {cfg.get('lora_alpha')} on {targets})"
        if kind == "PREFIX_TUNING":
            return f"prefix-tuning adapter ({cfg.get('num_virtual_tokens')} virtual tokens)"
        return f"{kind.lower()} adapter"
    return {"full": "full fine-tune: every weight trained",
            "freeze": "freeze fine-tune: the last layers trained"}.get(method, f"{method} fine-tune")


def usage(run_dir: Path, base: str, adapter: bool) -> list[str]:
    """How to use the folder with glmtune and with transformers/PEFT."""
    lines = ["## Use", "", "```bash"]
    if adapter:
        lines += [f"glmtune chat --model {base} --adapter {run_dir}",
                  f"glmtune export --model {base} --adapter {run_dir} --out merged/  # one standalone model"]
    else:
        lines.append(f"glmtune chat --model {run_dir}")
    lines += ["```", ""]
    if adapter:
        lines += ["```python", "from peft import AutoPeftModelForCausalLM",
                  f"model = AutoPeftModelForCausalLM.from_pretrained({str(run_dir)!r})", "```", ""]
    return lines


def run_card(run_dir: Path, base: str, method: str) -> str:
    """The card text for ``run_dir``: export's card (adapter front matter for adapters) plus usage."""
    from glmtune.export.merge import model_card

    adapter = (run_dir / "adapter_config.json").is_file()
    text = model_card(base, str(run_dir), describe_method(run_dir, method), weights_dtype(run_dir))
    if adapter:
        text = text.replace("library_name: transformers", "library_name: peft", 1)
    return text.rstrip("\n") + "\n\n" + "\n".join(usage(run_dir, base, adapter))


def write_run_card(run_dir: str | Path, base: str, method: str = "lora") -> Path:
    """Write ``run_dir/README.md`` (replacing PEFT's template); return its path."""
    run_dir = Path(run_dir)
    path = run_dir / CARD
    path.write_text(run_card(run_dir, base, method), encoding="utf-8")
    return path
