"""``glmtune export``: merge LoRA into the base weights (or keep a prefix adapter beside the base)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from glmtune.data.outputs import check_output, clear_model_files
from glmtune.errors import UserError
from glmtune.layout import get_layout
from glmtune.models import check_model_path, load_model, load_tokenizer_for

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def export_model(model: str, adapter: str, out: str, dtype: str = "bf16", max_shard_size: str = "2GB",
                 say: Any = print, overwrite: bool = False) -> Path:
    """Write ``out``: merged safetensors (sharded when large), tokenizer, stop ids, and a model card.

    A non-empty ``out`` is refused unless ``overwrite``; then its old weight files are deleted first."""
    if dtype not in DTYPES:
        raise UserError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    check_output(out, "--out", "dir", overwrite=overwrite)
    check_model_path(adapter, "adapter")
    out_dir = Path(out)
    if overwrite and out_dir.is_dir():
        clear_model_files(out_dir)
        shutil.rmtree(out_dir / "adapter", ignore_errors=True)
    tokenizer = load_tokenizer_for(model, adapter)
    layout = get_layout(tokenizer)
    peft_model = load_model(model, adapter=adapter, dtype=torch.float32)
    peft_type = str(peft_model.peft_config["default"].peft_type).rsplit(".", 1)[-1].lower()
    out_dir.mkdir(parents=True, exist_ok=True)
    if peft_type == "lora":
        merged = peft_model.merge_and_unload()
        merged = merged.to(DTYPES[dtype])
        merged.generation_config.eos_token_id = layout.stop_ids
        merged.generation_config.pad_token_id = tokenizer.pad_token_id
        merged.save_pretrained(out_dir, max_shard_size=max_shard_size)
        what = "LoRA merged into the base weights"
    else:  # prefix tuning cannot be merged: ship the base with the adapter as PEFT saved it
        base = peft_model.get_base_model().to(DTYPES[dtype])
        base.generation_config.eos_token_id = layout.stop_ids
        base.save_pretrained(out_dir, max_shard_size=max_shard_size)
        shutil.copytree(adapter, out_dir / "adapter", ignore=shutil.ignore_patterns("checkpoint-*", "runs", "plots"))
        what = f"{peft_type} adapter kept in adapter/ beside the base (prefix tuning cannot be merged)"
    tokenizer.save_pretrained(out_dir)
    (out_dir / "README.md").write_text(model_card(model, adapter, what, dtype), encoding="utf-8")
    say(f"exported to {out_dir}: {what}; dtype {dtype}; stop ids {layout.stop_ids}")
    return out_dir


def model_card(model: str, adapter: str, what: str, dtype: str) -> str:
    """A model card with the base model, the data hash, the plan and eval metrics when the run has them."""
    run = Path(adapter)
    lines = ["---", "library_name: transformers", f"base_model: {model}", "tags: [glmtune, glm4]", "---", "",
             f"# Fine-tune of {model}", "", f"Made with glmtune: {what}. Weights in {dtype}.", ""]
    config = run / "config.yaml"
    if config.is_file():
        import yaml

        data = yaml.safe_load(config.read_text(encoding="utf-8")).get("data", {})
        files = data.get("train_file") or []
        for entry in files if isinstance(files, list) else [files]:
            path = Path(entry["path"] if isinstance(entry, dict) else entry)
            if path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                lines.append(f"- training data `{path.name}`: sha256 `{digest}`")
        lines.append("")
    plan = run / "plan.json"
    if plan.is_file():
        lines += ["## Resolved plan", "", "| key | value | why |", "| --- | --- | --- |"]
        for item in json.loads(plan.read_text())["plan"]:
            lines.append(f"| `{item['key']}` | {item['value']} | {item['reason']} |")
        lines.append("")
    for name in ("eval/metrics.json", "metrics.json"):
        metrics = run / name
        if metrics.is_file():
            lines += ["## Evaluation", "", "```json", metrics.read_text(encoding="utf-8").strip(), "```", ""]
            break
    lines += ["Generation must stop on `<|endoftext|>`, `<|user|>` and `<|observation|>`; "
              "`generation_config.json` lists all three.", ""]
    return "\n".join(lines)
