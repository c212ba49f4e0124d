"""LLaMA-Factory as a peer: GLM-4 messages -> sharegpt + dataset_info.json, a train YAML, ``llamafactory-cli train``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from bench.peers.convert import ConversionError, call_arguments, convert_file
from bench.peers.spec import PeerSpec

VENV = "llamafactory"
ENTRY = "llamafactory.cli:main"
DATASET = "glmtune_train"
# odd positions (0-based even) are prompts, the others replies: LLaMA-Factory's sharegpt rule
PROMPT_TAGS = ("human", "observation")
REPLY_TAGS = ("gpt", "function_call")


def to_sharegpt(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """One GLM-4 conversation as a LLaMA-Factory sharegpt record (system and tools in their own columns)."""
    system: list[str] = []
    tools: list[Any] = []
    turns: list[dict[str, str]] = []
    for m in messages:
        role, content = m.get("role"), m.get("content") or ""
        if role == "system":
            if turns:
                raise ConversionError("a system message after the first turn (sharegpt has one system prompt)")
            tools.extend(m.get("tools") or [])
            if content:
                system.append(content)
        elif role == "user":
            turns.append({"from": "human", "value": content})
        elif role == "observation":
            turns.append({"from": "observation", "value": content})
        elif role == "assistant" and m.get("metadata"):
            call = {"name": m["metadata"], "arguments": call_arguments(m)}
            turns.append({"from": "function_call", "value": json.dumps(call, ensure_ascii=False)})
        elif role == "assistant":
            turns.append({"from": "gpt", "value": content})
        else:
            raise ConversionError(f"role {role!r} has no sharegpt tag")
    for i, turn in enumerate(turns):
        allowed = PROMPT_TAGS if i % 2 == 0 else REPLY_TAGS
        if turn["from"] not in allowed:
            raise ConversionError(f"turn {i + 1} is {turn['from']!r}; sharegpt needs {' or '.join(allowed)} there")
    if not turns or len(turns) % 2:
        raise ConversionError("the conversation does not end with an assistant reply")
    # both columns on every record: LLaMA-Factory reads a declared column from each row
    return {"conversations": turns, "system": "\n".join(system),
            "tools": json.dumps(tools, ensure_ascii=False) if tools else ""}


def dataset_info(file_name: str) -> dict[str, Any]:
    """The ``dataset_info.json`` entry that tells LLaMA-Factory how to read the sharegpt file."""
    return {DATASET: {
        "file_name": file_name,
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system", "tools": "tools"},
        "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"},
    }}


def train_args(spec: PeerSpec, data_dir: Path, output_dir: Path, bf16: bool) -> dict[str, Any]:
    """The ``llamafactory-cli train`` YAML for a LoRA SFT run with the ``glm4`` template."""
    targets = spec.target_modules
    args: dict[str, Any] = {
        "model_name_or_path": spec.model_dir,
        "trust_remote_code": True,
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": spec.lora_r,
        "lora_alpha": spec.lora_alpha,
        "lora_dropout": spec.lora_dropout,
        "lora_target": "all" if targets in ("all", "all-linear") else ",".join(targets),
        "dataset": DATASET,
        "dataset_dir": str(data_dir),
        "template": "glm4",
        "cutoff_len": spec.max_length,
        "overwrite_cache": True,
        "output_dir": str(output_dir),
        "overwrite_output_dir": True,
        "logging_steps": spec.logging_steps,
        "save_strategy": "no",
        "plot_loss": False,
        "report_to": "none",
        "per_device_train_batch_size": spec.per_device_batch,
        "gradient_accumulation_steps": spec.grad_accum,
        "learning_rate": spec.learning_rate,
        "num_train_epochs": spec.num_epochs,
        "lr_scheduler_type": spec.scheduler,
        "warmup_ratio": spec.warmup_ratio,
        "max_grad_norm": spec.max_grad_norm,
        "seed": spec.seed,
        "bf16": bf16,
        "dataloader_num_workers": 0,
    }
    if spec.max_steps:
        args["max_steps"] = spec.max_steps
    args.update(spec.extra)
    return args


def prepare(spec: PeerSpec, work: Path, output_dir: Path, bf16: bool) -> tuple[list[str], list[dict[str, Any]]]:
    """Write the converted data, dataset_info.json and the YAML; return the entry + argv and the skipped conversations."""
    records, skipped = convert_file(spec.train_jsonl, to_sharegpt)
    if not records:
        raise ValueError(f"{spec.train_jsonl}: no conversation could be converted for LLaMA-Factory: {skipped[:3]}")
    data_dir = work / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "train.json").write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    (data_dir / "dataset_info.json").write_text(json.dumps(dataset_info("train.json"), indent=2))
    config = work / "train.yaml"
    config.write_text(yaml.safe_dump(train_args(spec, data_dir, output_dir, bf16), sort_keys=False))
    return [ENTRY, "train", str(config)], skipped
