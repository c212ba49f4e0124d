"""Run inside the TRL venv: LoRA SFT with ``SFTTrainer`` on prompt-completion records (settings from a JSON file)."""

from __future__ import annotations

import json
import sys

from datasets import Dataset, Features, Json, Value
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer


def main(settings_path: str) -> None:
    """Train and save the adapter plus ``trainer_state.json`` into ``output_dir``."""
    s = json.loads(open(settings_path, encoding="utf-8").read())
    rows = [json.loads(line) for line in open(s["data"], encoding="utf-8") if line.strip()]
    # Json() keeps each message dict verbatim: arrow structs would add null keys that the template renders
    features = Features({"prompt": Json(), "completion": Json(), "tools": Value("string")})
    dataset = Dataset.from_list(rows, features=features)
    tokenizer = AutoTokenizer.from_pretrained(s["model_dir"])
    model = AutoModelForCausalLM.from_pretrained(s["model_dir"], dtype="bfloat16" if s["bf16"] else "float32")
    targets = s["target_modules"]
    lora = LoraConfig(task_type="CAUSAL_LM", r=s["lora_r"], lora_alpha=s["lora_alpha"], lora_dropout=s["lora_dropout"],
                      target_modules="all-linear" if targets in ("all", "all-linear") else targets)
    args = {
        "output_dir": s["output_dir"], "max_length": s["max_length"],
        "per_device_train_batch_size": s["per_device_batch"], "gradient_accumulation_steps": s["grad_accum"],
        "learning_rate": s["learning_rate"], "num_train_epochs": s["num_epochs"],
        "max_steps": s["max_steps"] or -1, "lr_scheduler_type": s["scheduler"],
        "warmup_steps": s["warmup_ratio"], "max_grad_norm": s["max_grad_norm"], "seed": s["seed"],
        "data_seed": s["seed"], "bf16": s["bf16"], "logging_steps": s["logging_steps"], "save_strategy": "no",
        "report_to": "none", "dataloader_num_workers": 0, "use_cpu": s["device"] == "cpu",
        **s["extra"],
    }
    trainer = SFTTrainer(model=model, args=SFTConfig(**args), train_dataset=dataset, processing_class=tokenizer,
                         peft_config=lora)
    trainer.train()
    trainer.save_model(s["output_dir"])
    trainer.save_state()


if __name__ == "__main__":
    main(sys.argv[1])
