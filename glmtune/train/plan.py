"""The capacity planner: every hyperparameter left at ``auto`` is derived from data size and model size.

``make_plan`` resolves a config section by section (``plan_rules`` holds each rule and its reason). Explicit
config values always win. It is called once before the model loads (``glmtune plan``, and to know how many
self-replay answers to draft) and once after, with what only the loaded model can tell (``ModelFacts``), so
that the plan printed and saved as ``plan.json`` is exactly what the run uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from glmtune.config.resolved import ResolvedConfig, resolve_config
from glmtune.config.schema import GlmtuneConfig
from glmtune.train.chunked_loss import LOSS_CHUNK_TOKENS
from glmtune.train.memory import MemoryEstimate, memory_items, quantized_weight_bytes
from glmtune.train.moe import EXPERT_DROPOUT, moe_experts_reason, moe_size_items, rule_moe_targets
from glmtune.train.plan_inputs import DataStats, ModelShape
from glmtune.train.plan_rules import (
    MIXED_MIN_BATCH,
    rule_base_anchor,
    rule_batching,
    rule_checkpointing,
    rule_chunked_loss,
    rule_cpu_kernels,
    rule_epochs,
    rule_eval_steps,
    rule_global_batch,
    rule_identity_replay,
    rule_lr,
    rule_micro_batch,
    rule_patience,
    rule_rank,
    rule_self_replay,
    rule_spelling_weight,
    rule_targets,
    rule_unlikelihood,
    rule_val_size,
    tier,
)
from glmtune.train.regularisers.identity_replay import MAX_QUESTIONS


@dataclass(frozen=True)
class ModelFacts:
    """What only the loaded model can tell the planner (None: not known yet)."""

    base_answers: int | None = None  # self-replay prompts the base model answered
    chunked_loss: tuple[bool, str] | None = None  # whether it can give its loss from hidden states, and why not


@dataclass(frozen=True)
class PlanInputs:
    """Everything ``make_plan`` weighs besides the config."""

    stats: DataStats
    params: int
    has_eval_file: bool
    shape: ModelShape | None = None
    device_memory: int = 0  # the accelerator's bytes (0 on CPU)
    bf16: bool = False  # training precision
    streaming: tuple[bool, str] | None = None  # data.streaming resolved from the files' sizes, and why
    facts: ModelFacts = ModelFacts()


@dataclass
class PlanItem:
    """One resolved hyperparameter."""

    key: str
    value: Any
    reason: str
    source: str  # "config" (user set it) or "auto"


@dataclass
class Plan:
    """The resolved config plus a reason for every value."""

    items: list[PlanItem] = field(default_factory=list)
    stats: DataStats | None = None
    params: int = 0
    active_params: int = 0  # parameters a token runs through, for a mixture-of-experts model (0: dense)
    memory: MemoryEstimate | None = None  # estimated peak GPU memory of one training process
    config: ResolvedConfig = field(init=False)  # set by make_plan once every value is decided

    def value(self, key: str) -> Any:
        """Resolved value of a dotted key."""
        for item in self.items:
            if item.key == key:
                return item.value
        raise KeyError(key)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form for ``glmtune plan --json`` and the run report."""
        data = {k: v for k, v in vars(self.stats).items() if k != "lengths"} if self.stats else None
        active = {"model_active_params": self.active_params} if self.active_params else {}
        memory = {"memory_estimate": self.memory.as_dict()} if self.memory else {}
        return {
            "model_params": self.params,
            **active,
            **memory,
            "data": data,
            "plan": [vars(item) for item in self.items],
        }


class _Planner:
    """Resolves one config in place, recording a ``PlanItem`` for every key."""

    def __init__(self, config: GlmtuneConfig, inputs: PlanInputs) -> None:
        self.cfg = config.model_copy(deep=True)
        self.inputs = inputs
        self.plan = Plan(stats=inputs.stats, params=inputs.params)

    def decide(self, section: Any, name: str, key: str, auto: tuple[Any, str]) -> Any:
        """Take the config's value, or the rule's for ``auto``; record which and why."""
        current = getattr(section, name)
        if current == "auto":
            setattr(section, name, auto[0])
            self.plan.items.append(PlanItem(key, auto[0], auto[1], "auto"))
        else:
            self.plan.items.append(PlanItem(key, current, "set in config", "config"))
        return getattr(section, name)

    def note(self, key: str, value: Any, reason: str, source: str) -> None:
        """Record a value the planner does not choose (set in config, or derived)."""
        self.plan.items.append(PlanItem(key, value, reason, source))

    def split(self) -> int:
        """Validation samples carved from the training file; returns how many train."""
        cfg, n = self.cfg, self.inputs.stats.samples
        self.note("peft.method", cfg.peft.method, "set in config" if "method" in cfg.peft.model_fields_set
                  else "default: LoRA adapters", "config")
        if self.inputs.has_eval_file:
            cfg.data.val_size = 0
            self.note("data.val_size", 0, "data.eval_file is set", "config")
            return max(1, n)
        return max(1, n - self.decide(cfg.data, "val_size", "data.val_size", rule_val_size(n)))

    def adapter(self, n_train: int) -> None:
        """LoRA targets, rank, alpha and dropout; the learning-rate schedule."""
        cfg, stats, params = self.cfg, self.inputs.stats, self.inputs.params
        lora, t = cfg.peft.lora, cfg.training
        if cfg.peft.method == "lora":
            moe = self.inputs.shape.moe if self.inputs.shape else None
            targets = rule_moe_targets(moe) if moe else rule_targets(n_train, params, "lora")
            if cfg.model.quantization != "none" and not moe:
                targets = ("all-linear", f"QLoRA (model.quantization: {cfg.model.quantization}): adapters on every "
                           "linear layer, as the QLoRA paper found necessary to match 16-bit fine-tuning")
            self.decide(lora, "target_modules", "peft.lora.target_modules", targets)
            if moe:
                self.note("peft.lora.moe_experts", lora.moe_experts,
                          moe_experts_reason(moe, lora.moe_experts, "moe_experts" in lora.model_fields_set), "config")
            r = self.decide(lora, "r", "peft.lora.r", rule_rank(stats.trained_tokens, stats.total_tokens))
            self.decide(lora, "alpha", "peft.lora.alpha", (max(32, 2 * r), "max(32, 2r): the official scale of 4 at r=8"))
            self.decide(lora, "dropout", "peft.lora.dropout", (0.0, EXPERT_DROPOUT) if moe and lora.moe_experts else
                        (0.1 if n_train < 1000 else 0.05, f"{n_train} samples: " +
                         ("official 0.1 against over-fitting" if n_train < 1000 else "more data, less dropout")))
        self.decide(t, "learning_rate", "training.learning_rate", rule_lr(cfg.peft.method, params, n_train))
        self.decide(t, "lr_scheduler_type", "training.lr_scheduler_type",
                    ("cosine", "smooth decay to zero; pairs with warm-up to keep the first steps small"))
        self.decide(t, "warmup_ratio", "training.warmup_ratio",
                    (0.05, "5% warm-up: no full-size step on a cold optimizer"))

    def regularisers(self, n_train: int) -> float:
        """Replay, self-replay, identity replay, the base anchor, unlikelihood and spelling; returns the anchor weight."""
        cfg, d = self.cfg, self.cfg.data
        if d.replay_file:
            self.decide(d, "replay_ratio", "data.replay_ratio",
                        (0.2 if n_train < 1000 else 0.1, "one general sample per 5 (small data) or 10 task samples"))
        else:
            self.decide(d, "replay_ratio", "data.replay_ratio", (0.0, "no data.replay_file"))
        self.decide(d, "self_replay", "data.self_replay", rule_self_replay(n_train, bool(d.replay_file)))
        self.decide(d, "identity_replay", "data.identity_replay", rule_identity_replay(cfg.identity.name))
        anchor = self.decide(cfg.training, "base_anchor", "training.base_anchor",
                             rule_base_anchor(cfg.peft.method, n_train, self.inputs.facts.base_answers))
        self.decide(cfg.identity, "unlikelihood", "identity.unlikelihood",
                    rule_unlikelihood(cfg.identity.name, float(anchor)))
        self.decide(cfg.identity, "spelling_weight", "identity.spelling_weight",
                    rule_spelling_weight(cfg.identity.name))
        return float(anchor)

    def batching(self, n_train: int) -> int:
        """Global batch, micro-batch, accumulation, packing and length grouping; returns the micro-batch."""
        cfg, t, d, inputs = self.cfg, self.cfg.training, self.cfg.data, self.inputs
        n_mixed = mixed_samples(cfg, n_train)
        general = mixed_samples(cfg, n_train, identity=False) > n_train  # general samples batches must mix in
        global_batch = rule_global_batch(n_mixed)
        if general and global_batch[0] < MIXED_MIN_BATCH:
            global_batch = (MIXED_MIN_BATCH, f"at least {MIXED_MIN_BATCH} when replay samples are mixed in, so "
                            "every step sees task and replay samples together (smaller batches alternate between "
                            "them and their losses spike)")
        explicit_micro = t.per_device_train_batch_size != "auto"
        micro = self.decide(t, "per_device_train_batch_size", "training.per_device_train_batch_size",
                            rule_micro_batch(global_batch[0], inputs.params))
        reason = (f"micro-batch {micro} set in config; no accumulation" if explicit_micro else
                  f"global batch {global_batch[0]} ({global_batch[1]}) / micro-batch {micro}")
        self.decide(t, "gradient_accumulation_steps", "training.gradient_accumulation_steps",
                    (1 if explicit_micro else max(1, global_batch[0] // micro), reason))
        width = (inputs.shape or ModelShape(inputs.params)).filled().hidden
        rule = rule_batching(inputs.stats, int(micro), cfg.model.attn_implementation, width, mixed=general)
        packing = self.decide(d, "packing", "data.packing", (rule[0] == "packing", rule[1]))
        self.decide(d, "group_by_length", "data.group_by_length",
                    (rule[0] == "grouping" and not packing,
                     rule[1] if not packing else "packing already removes padding"))
        return int(micro)

    def memory(self, micro: int, anchor: float) -> None:
        """Chunked loss and activation checkpointing, from the estimated peak memory."""
        cfg, t, inputs = self.cfg, self.cfg.training, self.inputs
        bf16 = inputs.bf16
        # Full fine-tuning keeps fp32 weights, gradients and two AdamW moments; adapters keep frozen weights only.
        weight_bytes = 16 if cfg.peft.method not in ("lora", "ptuning") else (2 if bf16 else 4)
        if cfg.model.quantization != "none":  # QLoRA: bytes per parameter of the quantized base
            weight_bytes = quantized_weight_bytes(inputs.shape or ModelShape(inputs.params), cfg.model.quantization)
        chunked = self.decide(t, "chunked_loss", "training.chunked_loss",
                              rule_chunked_loss(t.fsdp, inputs.facts.chunked_loss))
        support = inputs.facts.chunked_loss
        if chunked is True and support is not None and not support[0]:  # set in config, but this model cannot
            t.chunked_loss = chunked = False
            self.plan.items[-1] = PlanItem("training.chunked_loss", False,
                                           f"set in config, but {support[1]}: the loss uses the full logits", "auto")
        self.decide(t, "fused_lora", "training.fused_lora",
                    rule_cpu_kernels(cfg.peft.method, inputs.device_memory > 0, bf16) if cfg.model.quantization ==
                    "none" else (False, "model.quantization: bitsandbytes' quantized layers keep PEFT's forward"))
        shape = (inputs.shape or ModelShape(inputs.params)).filled()
        self.decide(t, "gradient_checkpointing", "training.gradient_checkpointing",
                    (False, "P-tuning v2 (PEFT prefix tuning) does not work with activation checkpointing")
                    if cfg.peft.method == "ptuning" else
                    rule_checkpointing(inputs.stats, micro, cfg.data.max_length, shape, weight_bytes, 2 if bf16 else 4,
                                       inputs.device_memory, head_rows=LOSS_CHUNK_TOKENS if chunked else 0,
                                       anchor=anchor > 0))

    def peak_memory(self, micro: int, anchor: float) -> None:
        """The estimated peak GPU memory, term by term, and the cards it fits (glmtune.train.memory)."""
        shape = self.inputs.shape or ModelShape(self.inputs.params)
        self.plan.memory, items = memory_items(self.cfg, shape, micro, self.inputs.stats.max_tokens,
                                               self.inputs.bf16, anchor > 0, self.inputs.device_memory)
        for key, value, reason in items:
            self.note(key, value, reason, "estimate")

    def schedule(self, n_train: int, micro: int) -> None:
        """Epochs or steps, weight decay, NEFTune, evaluation cadence and early stopping."""
        cfg, t, params = self.cfg, self.cfg.training, self.inputs.params
        if t.max_steps > 0:
            self.note("training.max_steps", t.max_steps, "set in config", "config")
        else:  # renamed identity answers are more answers to the same questions: the visit budget covers them
            self.decide(t, "num_train_epochs", "training.num_train_epochs",
                        rule_epochs(taught_samples(cfg, n_train), params))
        steps = total_steps(cfg, n_train)
        n_mixed = mixed_samples(cfg, n_train)
        mixed = f" + {n_mixed - n_train} replay" if n_mixed > n_train else ""
        self.note("training.total_steps", steps, f"{n_train} training samples{mixed}, "
                  f"batch {micro}×{t.gradient_accumulation_steps}", "auto")
        self.decide(t, "weight_decay", "training.weight_decay",
                    (0.01, "mild pull towards the base weights: implicit regularisation on small data"))
        self.decide(t, "neftune_noise_alpha", "training.neftune_noise_alpha",
                    (0.0, "off on a tiny model: alpha-5 noise is large next to 128-wide embeddings")
                    if tier(params) == "tiny" else
                    ((5.0, "small data on a real model: NEFTune noise (alpha 5) against memorising phrasing")
                     if n_train < 5000 else (0.0, f"{n_train} samples: enough data, no noise needed")))
        every = self.decide(t, "eval_steps", "training.eval_steps", rule_eval_steps(steps))
        self.decide(t, "patience", "training.patience", rule_patience(int(every), steps))
        has_val = self.inputs.has_eval_file or int(cfg.data.val_size) > 0
        if t.early_stopping and not has_val:
            t.early_stopping = False
            self.note("training.early_stopping", False, "no validation data: cannot stop early", "auto")
        else:
            self.note("training.early_stopping", t.early_stopping, "set in config" if "early_stopping" in
                      t.model_fields_set else "default: stop when validation loss stops improving, keep the best",
                      "config")

    def model_size(self) -> None:
        """Total and active parameters and the weights' memory, for a mixture-of-experts model."""
        moe = self.inputs.shape.moe if self.inputs.shape else None
        if moe is not None:
            self.plan.active_params = moe.active(self.inputs.params)
            for key, value, reason in moe_size_items(moe, self.inputs.params, self.inputs.bf16, self.cfg.peft.method):
                self.note(key, value, reason, "auto")

    def streaming(self) -> None:
        """Whether the training data is streamed (decided from the files' sizes before planning)."""
        streaming = self.inputs.streaming or (False, "the planner was not given the training files' sizes")
        self.decide(self.cfg.data, "streaming", "data.streaming", streaming)


def make_plan(config: GlmtuneConfig, stats: DataStats, params: int, has_eval_file: bool,
              shape: ModelShape | None = None, device_memory: int = 0, bf16: bool = False,
              streaming: tuple[bool, str] | None = None, facts: ModelFacts = ModelFacts()) -> Plan:
    """Resolve every ``auto`` value of ``config``; return the resolved copy and the reason for each value.

    ``shape`` holds the model's layer sizes (estimated from ``params`` where missing), ``device_memory`` the
    accelerator's bytes (0 on CPU), ``bf16`` the training precision, ``streaming`` the streaming decision made
    from the files' sizes, and ``facts`` what the loaded model showed (nothing before it loads).
    """
    inputs = PlanInputs(stats, params, has_eval_file, shape, device_memory, bf16, streaming, facts)
    planner = _Planner(config, inputs)
    planner.model_size()
    n_train = planner.split()
    planner.adapter(n_train)
    anchor = planner.regularisers(n_train)
    micro = planner.batching(n_train)
    planner.memory(micro, anchor)
    planner.peak_memory(micro, anchor)
    planner.schedule(n_train, micro)
    planner.streaming()
    planner.plan.config = resolve_config(planner.cfg)
    return planner.plan


def taught_samples(cfg: GlmtuneConfig, n_train: int) -> int:
    """Training samples plus identity-replay samples, counted at their most (one per sample, up to 512)."""
    renamed = cfg.data.identity_replay is True and bool(cfg.identity.name)
    return n_train + (min(n_train, MAX_QUESTIONS) if renamed else 0)


def mixed_samples(cfg: GlmtuneConfig, n_train: int, identity: bool = True) -> int:
    """Training rows per epoch once replay, self-replay and (``identity``) identity-replay samples are mixed in.

    Self-replay keeps its ratio against the identity-replay samples too.
    """
    taught = taught_samples(cfg, n_train) if identity else n_train
    replay = float(cfg.data.replay_ratio) if cfg.data.replay_ratio != "auto" else 0.0
    self_replay = float(cfg.data.self_replay) if cfg.data.self_replay != "auto" else 0.0
    return taught + round(replay * n_train) + round(self_replay * taught)


def total_steps(cfg: GlmtuneConfig, n_train: int) -> int:
    """Optimiser steps the run will take (before early stopping), replay samples included."""
    t = cfg.training
    if t.max_steps > 0:
        return t.max_steps
    per_step = int(t.per_device_train_batch_size) * int(t.gradient_accumulation_steps)
    return max(1, math.ceil(mixed_samples(cfg, n_train) / per_step) * math.ceil(float(t.num_train_epochs)))
