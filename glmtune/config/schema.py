"""Every configuration option, its type and its default, in one place.

A value of ``"auto"`` is resolved by the capacity planner (``glmtune plan``) from the number of samples,
the number of supervised tokens and the model size; ``configs/lora.yaml`` sets the official GLM-4
recipe explicitly instead. Each field's ``description`` is what the README's config reference shows.
"""

from __future__ import annotations

import warnings
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Auto = Literal["auto"]
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    """Which base model to fine-tune."""

    name_or_path: str = Field(description="Local folder or hub id of the base model (e.g. THUDM/glm-4-9b-chat-hf).")
    trust_remote_code: bool = Field(False, description="Allow the model folder's own Python code (old GLM-4 repos).")
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = Field(
        "sdpa", description="Attention kernel handed to transformers."
    )
    quantization: Literal["none", "4bit", "8bit"] = Field(
        "none", description="QLoRA: load the frozen base through bitsandbytes, 4bit (NF4, double quantisation, "
        "bf16 compute) or 8bit (LLM.int8), and train LoRA adapters on it (peft.method lora only; LoRA targets "
        "default to every linear layer). Needs the optional extra: pip install 'glmtune[qlora]'. predict and export "
        "load the unquantised base; export merges into it."
    )


class DataSource(_Section):
    """One training file with its format and sampling weight."""

    path: str = Field(description="A .jsonl/.json/.csv/.parquet file.")
    format: Literal["auto", "glm4", "openai", "alpaca", "sharegpt"] = Field(
        "auto", description="Record format; auto-detected by default."
    )
    weight: PositiveFloat = Field(1.0, description="Sampling weight (> 0): 2.0 uses each sample twice, 0.5 a seeded "
                                  "random half; supervised-token counts in the plan follow it.")


class DataConfig(_Section):
    """Training data and how it is laid out as tokens."""

    train_file: str | list[str | DataSource] = Field(
        description="Training data: one file, or a list of files / {path, format, weight} entries. Any supported "
        "format (GLM-4 messages, OpenAI messages, alpaca, sharegpt) in .jsonl/.json/.csv/.parquet. `weight` (> 0, "
        "default 1) sets how often an entry's samples are used per epoch: the integer part repeats the whole file, "
        "the fraction is a seeded random share (2.0 = every sample twice, 0.1 = a tenth of them). The planner counts "
        "samples and supervised tokens after weighting. Weights are refused with streaming."
    )
    eval_file: str | None = Field(None, description="Evaluation data; without it a validation split is carved.")
    max_reject_ratio: Fraction = Field(
        0.1, description="Refuse to train when more than this share of the records is rejected."
    )
    combine: bool = Field(
        True,
        description="true: train only the last assistant turn (official default); false: every assistant turn.",
    )
    train_reasoning: bool = Field(
        True,
        description="Thinking templates: true trains the last reply's reasoning with its answer; false keeps "
        "the reasoning in the input but trains only the answer.",
    )
    max_length: int = Field(1025, ge=8, description="Longest sample in tokens (official: 512 + 512 + 1).")
    truncation: Literal["keep_recent", "official"] = Field(
        "keep_recent",
        description="Over-long samples. keep_recent: keep system prompt and tools, drop the oldest whole turns, "
        "then cut the last prompt from the left; the reply's end token survives whenever it can. official: a "
        "plain right cut.",
    )
    packing: bool | Auto = Field(
        "auto",
        description="Flatten each micro-batch into one padding-free row with per-sample position_ids (attention "
        "stays inside each sample). auto: the planner decides from the length distribution.",
    )
    group_by_length: bool | Auto = Field(
        "auto", description="Unpacked alternative: batch samples of similar length together. auto: planner."
    )
    val_size: NonNegativeInt | Auto = Field(
        "auto",
        description="Samples held out for validation when eval_file is absent. auto: 10% (at least 4, at most 200) "
        "when there are at least 12 samples, else none; 0 disables. The split is deterministic (seeded).",
    )
    replay_file: str | None = Field(
        None, description="General-purpose JSONL mixed into training to limit forgetting."
    )
    replay_ratio: NonNegativeFloat | Auto = Field(
        "auto", description="Replay samples per training sample (0.2 = one replay sample for five). auto: planner."
    )
    repair: bool = Field(
        True, description="Apply `data check --fix` repairs while reading: trim and NFC-normalise texts, drop empty "
        "turns, merge repeated roles, remove exact duplicates (listed in rejected.jsonl, not counted as rejected)."
    )
    self_replay: NonNegativeFloat | Auto = Field(
        "auto",
        description="Self-replay samples per training sample: general prompts (data.self_replay_prompts) with the "
        "base model's own replies, mixed in against forgetting (drafts naming an identity are dropped). 0 "
        "disables. auto: planner.",
    )
    self_replay_prompts: str = Field(
        "auto", description="Where self-replay prompts come from: auto (glmtune's bundled general zh/en prompts, then "
        "prompts the model samples itself), bundled, model (sampled from an empty user turn, the Magpie idea), or a "
        "file: JSONL rows with 'prompt' or 'messages', or one prompt per line."
    )
    identity_replay: bool | Auto = Field(
        "auto", description="With identity.name set: the base model answers the training data's identity questions "
        "in its own words, the old name and maker (ChatGLM, Zhipu AI) are replaced by identity.name and "
        "identity.author, and these answers are trained too (written to identity_replay.jsonl). auto: off (it cuts "
        "leakage of the old identity but costs some skill retention; see the README)."
    )
    self_replay_context: float = Field(
        0.5, ge=0, le=1, description="Share of self-replay samples followed by a single-turn training conversation "
        "(both replies trained), so that what the fine-tune teaches, an identity above all, also holds after other "
        "turns of a conversation. The validation split is never used. 0 disables."
    )
    self_replay_context_turns: int = Field(
        8, ge=1, le=32, description="Such a training conversation comes after 1 to this many exchanges of the "
        "base model's own, every depth equally often, so that it also holds deep in a conversation "
        "(bench/RESULTS.md, identity at depth). 1: always after a single exchange."
    )
    cache: bool = Field(
        True, description="Reuse tokenized data: a second run on the same files, tokenizer and options loads the "
        "Arrow files of the first (memory-mapped). false: tokenize into a temporary folder removed at exit."
    )
    cache_dir: str | None = Field(
        None, description="Where tokenized data is cached; default $GLMTUNE_CACHE, else ~/.cache/glmtune/datasets."
    )
    cache_max_gb: NonNegativeFloat = Field(
        20.0, description="Size limit of the tokenized-data cache in GiB: after tokenizing, the least recently used "
        "entries beyond it are deleted (never those of the current run). 0: no limit."
    )
    num_proc: PositiveInt | Auto = Field(
        "auto", description="Processes that tokenize (datasets map). auto: 1 below 20,000 conversations, then one "
        "per 20,000, at most the usable CPUs and 8."
    )
    streaming: bool | Auto = Field(
        "auto", description="Read and tokenize lazily while training (datasets IterableDataset), for files larger "
        "than memory; needs training.max_steps. auto: on when the training files together exceed half of the "
        "available RAM. See README 'Large data' for what changes."
    )


class LoraConfig(_Section):
    """LoRA adapter shape (PEFT)."""

    r: PositiveInt | Auto = Field("auto", description="LoRA rank. Official: 8.")
    alpha: PositiveInt | Auto = Field("auto", description="LoRA alpha (scaling = alpha / r). Official: 32.")
    dropout: Fraction | Auto = Field("auto", description="Dropout on the LoRA input. Official: 0.1.")
    target_modules: list[str] | str = Field(
        "auto", description="Modules to adapt: a list, 'all-linear', or auto. Official: [q_proj, k_proj, v_proj]. "
        "On a mixture-of-experts model (GLM-4.5) auto and all-linear mean attention, the dense layers' MLPs and the "
        "shared experts, never the router; a bare MLP name (gate_proj) means those layers, not the routed experts."
    )
    moe_experts: bool = Field(
        False, description="Mixture-of-experts models: also adapt the routed experts' stacked weights (PEFT "
        "target_parameters). Off by default: every expert gets its own adapter, so adapter and optimizer memory grow "
        "with the expert count while each token trains only the few experts it is routed to."
    )


class PtuningConfig(_Section):
    """P-tuning v2: PEFT prefix tuning, as in the official configs."""

    num_virtual_tokens: PositiveInt = Field(128, description="Prefix length (official GLM-4 ptuning_v2: 128–512).")


class FreezeConfig(_Section):
    """Freeze tuning: only the last layers are trained."""

    trainable_layers: PositiveInt = Field(2, description="Number of final decoder layers left trainable.")


class PeftConfig(_Section):
    """Tuning method."""

    method: Literal["lora", "ptuning", "full", "freeze"] = Field(
        "lora",
        description="lora (PEFT LoRA adapter), ptuning (P-tuning v2 = PEFT prefix tuning), full (every weight), "
        "freeze (only the last peft.freeze.trainable_layers layers).",
    )
    lora: LoraConfig = Field(default_factory=LoraConfig)
    ptuning: PtuningConfig = Field(default_factory=PtuningConfig)
    freeze: FreezeConfig = Field(default_factory=FreezeConfig)


class StabilityConfig(_Section):
    """The loss-spike / NaN guard."""

    enabled: bool = Field(True, description="Watch every optimiser step; skip bad updates, roll back on repeats.")
    loss_spike_factor: float = Field(2.0, gt=1.0, description="A step loss above this × its running average is a spike…")
    loss_spike_min_delta: float = Field(
        1.0, ge=0.0, description="…if it is also this many nats above the average (ignores noise at tiny losses)."
    )
    grad_spike_factor: float = Field(
        10.0, gt=1.0, description="A gradient norm above this × its running average is a spike."
    )
    warmup_steps: int = Field(1, ge=0, description="Good steps that only feed the running averages before judging.")
    ema_beta: float = Field(0.9, gt=0.0, lt=1.0, description="Smoothing of the running averages.")
    max_spikes: int = Field(3, ge=1, description="Spikes within `window` steps that trigger a rollback.")
    window: int = Field(20, ge=1, description="Steps over which spikes are counted.")
    lr_backoff: float = Field(0.5, gt=0.0, lt=1.0, description="Learning-rate multiplier applied at each rollback.")
    snapshot_every: int = Field(10, ge=1, description="Good steps between snapshots of trainable weights + optimizer.")


class TrainingConfig(_Section):
    """Optimisation; handed to transformers' ``TrainingArguments``."""

    @model_validator(mode="before")
    @classmethod
    def _drop_removed_keys(cls, data: Any) -> Any:
        """Accept ``fused_norm_rotary`` from older configs, with a warning: the option was removed."""
        if isinstance(data, dict) and "fused_norm_rotary" in data:
            data = {k: v for k, v in data.items() if k != "fused_norm_rotary"}
            warnings.warn("training.fused_norm_rotary was removed (transformers 5.25 and later undo it "
                          "after the first step); the key is ignored", UserWarning, stacklevel=2)
        return data

    output_dir: str = Field("runs/glmtune", description="Where the adapter, tokenizer, config and logs go.")
    learning_rate: PositiveFloat | Auto = Field("auto", description="Peak learning rate. Official LoRA: 5e-4.")
    num_train_epochs: PositiveFloat | Auto = Field("auto", description="Epochs; ignored when max_steps > 0.")
    max_steps: int = Field(-1, description="Optimiser steps; -1 means use num_train_epochs.")
    per_device_train_batch_size: PositiveInt | Auto = Field("auto", description="Micro-batch size per device. Official: 1.")
    per_device_eval_batch_size: int = Field(8, ge=1, description="Eval batch size per device.")
    gradient_accumulation_steps: PositiveInt | Auto = Field("auto", description="Micro-batches per optimiser step.")
    lr_scheduler_type: str = Field("auto", description="transformers scheduler name (linear, cosine, ...) or auto.")
    warmup_ratio: Fraction | Auto = Field("auto", description="Share of steps spent warming up. Official: 0.")
    max_grad_norm: float = Field(1.0, ge=0.0, description="Gradient clipping norm (0 disables). Official: 1.0.")
    weight_decay: NonNegativeFloat | Auto = Field("auto", description="AdamW weight decay. Official: 0.")
    neftune_noise_alpha: NonNegativeFloat | Auto = Field("auto", description="NEFTune embedding noise (0 = off).")
    early_stopping: bool = Field(True, description="Stop when validation loss stops improving; keep the best step.")
    patience: PositiveInt | Auto = Field("auto", description="Evaluations without improvement before stopping.")
    eval_steps: PositiveInt | Auto = Field("auto", description="Evaluate every N optimiser steps.")
    seed: int = Field(42, description="Seed for weights init, data order, split and dropout.")
    bf16: bool | Auto = Field("auto", description="auto: bf16 on a GPU that supports it, else fp32.")
    fp16: bool = Field(False, description="fp16 is refused for GLM models (it overflows); see allow_fp16.")
    allow_fp16: bool = Field(False, description="Expert override: train in fp16 anyway.")
    logging_steps: int = Field(10, ge=1, description="Log loss, lr and grad norm every N optimiser steps.")
    save_steps: int = Field(500, ge=1, description="Checkpoint every N steps (every eval when early stopping).")
    save_total_limit: int | None = Field(2, description="Keep at most this many checkpoints (plus the best).")
    dataloader_num_workers: int | Literal["auto"] = Field(
        "auto", description="DataLoader worker processes. auto: 0 without a GPU (the samples are already tokenized, "
        "so workers would only take cores from the step); with GPUs, the cores per process minus one, at most 4.",
    )
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="Label smoothing factor.")
    gradient_checkpointing: bool | Literal["selective"] | Auto = Field(
        "auto", description="Trade compute for activation memory. true: recompute every layer's forward pass "
        "(30-60% more time per step on CPU); selective: keep the outputs of the matrix products and of attention, "
        "recompute only norms, activations, rotary embeddings and adapter sums (about 20% more time, 65-82% of the "
        "memory that true frees); false: keep everything. auto: selective when the planner estimates that it frees "
        "more memory than the model's weights take (and at least 64 MiB) or the peak without it exceeds 80% of the "
        "GPU; true when even selective would exceed 80% of the GPU. P-tuning (prefix tuning) cannot checkpoint: auto "
        "is false for it and any other value is refused.")
    chunked_loss: bool | Auto = Field(
        "auto", description="Compute the loss from the final hidden states over trained positions only, 1,024 rows "
        "of logits at a time under checkpointing, instead of transformers' full logits tensor (tokens x vocabulary, "
        "kept three times over: logits, softmax, gradient). Same loss and gradients. auto: on, except with FSDP "
        "(which gathers the output layer only inside the model's own forward) and for models whose output layer is "
        "not a plain linear layer or that cap their logits.")
    fused_lora: bool | Auto = Field(
        "auto", description="CPU-only speed code (glmtune.experimental.cpu_kernels). auto: on for LoRA trained in "
        "fp32 without a GPU, where bench.fused_lora measured 12-14% shorter steps; off on a GPU, where PEFT's and "
        "transformers' own layers run. LoRA only: compute each adapted linear layer as one addmm (base output + scaled adapter "
        "product) instead of PEFT's three full-width tensors (adapter output, scaled copy, sum), and get B's gradient "
        "in the shape matrix libraries handle well. Same values to fp32 rounding (under bf16 autocast: rounded once, not "
        "three times). Layers PEFT computes any other way (merged, switched off, DoRA, a bf16 base under fp32 adapters "
        "without autocast, DeepSpeed ZeRO-3) keep PEFT's forward. false: PEFT's forward everywhere.")
    base_anchor: NonNegativeFloat | Auto = Field(
        "auto", description="Adapters only: weight of a KL term from the base model (the adapter switched off) to "
        "the fine-tuned one, at the trained positions where the base model's top token already equals the target, "
        "so the fine-tune changes what the data asks for and keeps the rest of each distribution. One extra forward "
        "pass per step without gradients. 0 = off. auto: 1.0 below 1,000 training samples with an adapter, else 0.")
    deepspeed: str | None = Field(
        None, description="DeepSpeed JSON config handed to the Trainer, e.g. configs/ds_zero2.json or ds_zero3.json."
    )
    fsdp: str | None = Field(None, description="FSDP mode string handed to the Trainer, e.g. 'full_shard auto_wrap'. "
                             "Needs CUDA GPUs: refused without them (accelerate would train plain DDP on CPU).")
    torch_compile: bool = Field(False, description="Compile the model with torch.compile.")
    liger_kernels: bool = Field(
        False, description="GPU only: patch the model with Liger's Triton kernels (for GLM-4: RMSNorm and the SwiGLU "
        "MLP) before the adapters are added; needs the liger-kernel package. Liger's fused cross-entropy is left out: "
        "glmtune computes the loss (training.chunked_loss). Refused without a CUDA GPU.")
    report_to: list[str] = Field(
        default_factory=lambda: ["tensorboard"], description="Trainer integrations; TensorBoard logs go to output_dir."
    )


class IdentityConfig(_Section):
    """Who the fine-tuned assistant is: fills {{name}}/{{author}} placeholders and guards against the old one."""

    name: str | None = Field(None, description="The assistant's new name; fills {{name}} in the data.")
    author: str | None = Field(None, description="Who made it; fills {{author}} in the data.")
    rewrite_tool_prompt: bool | Auto = Field(
        "auto", description="Render GLM-4's tool system prompt with this identity instead of 'ChatGLM by Zhipu AI' "
        "(saved with the adapter's tokenizer). auto: on when name is set and the template has that prompt."
    )
    unlikelihood: NonNegativeFloat | Auto = Field(
        "auto", description="With name set: weight of an unlikelihood term, -log(1 - p(old name)), on the old "
        "identity's tokens (ChatGLM, Zhipu, 智谱) at every trained reply position, so that the old name loses "
        "probability in every context the fine-tune sees (tokens the new name or author use are spared). 0 = off. "
        "auto: 1.0 when name is set and training.base_anchor is on, else 0 (the README's Stability section has "
        "what it measured)."
    )
    spelling_weight: NonNegativeFloat | Auto = Field(
        "auto", description="With name set: extra loss weight on the tokens after the first of the name and the "
        "author wherever the training replies spell them (a name the tokenizer splits into pieces is otherwise "
        "started and then misspelled). 0 = off; no effect on a name that is one token. auto: the planner."
    )
    conflicts: Literal["drop", "warn"] = Field(
        "drop", description="Training samples whose replies or system prompts name the old identity (ChatGLM, "
        "Zhipu AI) while name is set: drop (listed in rejected.jsonl) or warn and keep them."
    )


class GlmtuneConfig(_Section):
    """A whole training run."""

    model: ModelConfig
    data: DataConfig
    peft: PeftConfig = Field(default_factory=PeftConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    stability: StabilityConfig = Field(default_factory=StabilityConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
