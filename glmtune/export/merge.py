"""``glmtune export``: merge LoRA into the base weights (or keep a prefix adapter beside the base)."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import torch

from glmtune.data.outputs import check_output, clear_model_files
from glmtune.errors import UserError
from glmtune.layout import get_layout
from glmtune.models import check_model_path, load_model, load_tokenizer_for

log = logging.getLogger(__name__)

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def export_model(model: str, adapter: str, out: str, dtype: str = "bf16", max_shard_size: str = "2GB",
                 overwrite: bool = False) -> Path:
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
    check_unquantised_base(model, adapter)
    tokenizer = load_tokenizer_for(model, adapter)
    layout = get_layout(tokenizer)
    peft_model = load_model(model, adapter=adapter, dtype=torch.float32)  # never quantized: merge into full weights
    peft_type = str(peft_model.peft_config["default"].peft_type).rsplit(".", 1)[-1].lower()
    out_dir.mkdir(parents=True, exist_ok=True)
    if peft_type == "lora":
        merged = peft_model.merge_and_unload()
        merged = merged.to(DTYPES[dtype])
        set_stop_ids(merged, layout.stop_ids, tokenizer.pad_token_id)
        merged.save_pretrained(out_dir, max_shard_size=max_shard_size)
        what = "LoRA merged into the base weights"
    else:  # prefix tuning cannot be merged: ship the base with the adapter as PEFT saved it
        base = peft_model.get_base_model().to(DTYPES[dtype])
        set_stop_ids(base, layout.stop_ids, tokenizer.pad_token_id)
        base.save_pretrained(out_dir, max_shard_size=max_shard_size)
        shutil.copytree(adapter, out_dir / "adapter", ignore=shutil.ignore_patterns("checkpoint-*", "runs", "plots"))
        what = f"{peft_type} adapter kept in adapter/ beside the base (prefix tuning cannot be merged)"
    tokenizer.save_pretrained(out_dir)
    stops = [str(t) for t in tokenizer.convert_ids_to_tokens(layout.stop_ids)]
    (out_dir / "README.md").write_text(model_card(model, adapter, what, dtype, stops), encoding="utf-8")
    log.info(f"exported to {out_dir}: {what}; dtype {dtype}; stop ids {layout.stop_ids}")
    return out_dir


def set_stop_ids(model: torch.nn.Module, stop_ids: list[int], pad_id: int | None) -> None:
    """Make the saved generation config (and the model config) stop on every one of the layout's stop ids."""
    model.generation_config.eos_token_id = list(stop_ids)
    model.config.eos_token_id = list(stop_ids)
    if pad_id is not None:
        model.generation_config.pad_token_id = pad_id


def check_unquantised_base(model: str, adapter: str) -> None:
    """Refuse a quantized base checkpoint (merging into it would round the adapter into 4/8-bit weights); say so
    when the adapter was trained on a base quantized at load time (QLoRA): it merges into the full weights."""
    from glmtune.quantization import checkpoint_quantization, trained_quantization

    quantized = checkpoint_quantization(model)
    if quantized:
        raise UserError(f"--model {model} is a quantized checkpoint ({quantized}): export merges the adapter into "
                        "unquantised weights; pass the original bf16/fp32 base model it was quantized from")
    trained = trained_quantization(adapter)
    if trained != "none":
        log.info(f"the adapter was trained on a {trained} base (QLoRA, model.quantization): merging it into the "
                 "unquantised base weights, loaded in fp32")


def model_card(model: str, adapter: str, what: str, dtype: str, stops: list[str] | None = None) -> str:
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
    stops = stops or ["<|endoftext|>", "<|user|>", "<|observation|>"]
    lines += [f"Generation must stop on {', '.join(f'`{t}`' for t in stops)}; `generation_config.json` lists "
              f"{'all of them' if len(stops) > 1 else 'it'} (`eos_token_id`).", ""]
    return "\n".join(lines)
