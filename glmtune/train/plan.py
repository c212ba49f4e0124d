"""The capacity planner: every hyperparameter left at ``auto`` is derived from data size and model size.

Each rule returns a value and the reason for it, so ``glmtune plan`` can print why. Explicit config values
always win. The tiers and numbers are documented in the README's "Capacity planner" table and were
chosen from the measurements recorded in bench/RESULTS.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from glmtune.config.schema import GlmtuneConfig

TINY_PARAMS = 50_000_000  # below this, a model is "tiny" (the test and demo models)
LARGE_PARAMS = 3_000_000_000
SELF_REPLAY_BELOW = 1000  # training samples under which the base model's own answers are mixed in
ANCHOR_BELOW = 1000  # training samples under which a fine-tune is anchored to its base model
ANCHOR_WEIGHT = 1.0  # training.base_anchor when on
UNLIKELIHOOD_WEIGHT = 1.0  # identity.unlikelihood when on
SELF_REPLAY_RATIO = 2.0
MIN_CHECKPOINT_SAVING = 64 * 2**20  # selective checkpointing that frees less memory than this is not worth it
IDENTITY_REPLAY_MAX = 512  # identity questions answered by the base model at most (train/identity_replay.py)
LOSS_CHUNK_TOKENS = 1024  # rows of logits alive at once with training.chunked_loss (train/chunked_loss.py)
MIXED_MIN_BATCH = 8  # global batch floor when replay or self-replay samples are mixed in


@dataclass
class DataStats:
    """What the planner needs to know about the training data, counted after weighted sampling."""

    samples: int
    trained_tokens: int
    total_tokens: int
    max_tokens: int = 0
    lengths: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.total_tokens and self.trained_tokens > self.total_tokens:
            raise ValueError(f"{self.trained_tokens} supervised tokens cannot exceed {self.total_tokens} tokens: "
                             "both must be counted over the same (weighted) samples")

    def pad_fraction(self, batch: int) -> float:
        """Share of padding when samples are batched in their file order with ``batch`` per micro-batch."""
        if batch <= 1 or not self.lengths:
            return 0.0
        padded = sum(max(self.lengths[i:i + batch]) * len(self.lengths[i:i + batch])
                     for i in range(0, len(self.lengths), batch))
        return 1.0 - sum(self.lengths) / padded

    def grouped_rows(self, batch: int) -> list[list[int]]:
        """Micro-batches as length grouping forms them: sorted within mega-batches of 50 micro-batches."""
        rows: list[list[int]] = []
        for start in range(0, len(self.lengths), 50 * batch):
            mega = sorted(self.lengths[start:start + 50 * batch], reverse=True)
            rows += [mega[i:i + batch] for i in range(0, len(mega), batch)]
        return rows

    def grouped_pad_fraction(self, batch: int) -> float:
        """Share of padding left once micro-batches are grouped by length."""
        groups = self.grouped_rows(batch) if batch > 1 else []
        padded = sum(max(g) * len(g) for g in groups)
        return 1.0 - sum(self.lengths) / padded if padded else 0.0

    def step_cost(self, batch: int, width: int, how: str) -> float:
        """Relative compute of one epoch: linear work per (padded) token plus attention that grows with the row.

        Per layer, a token costs about ``12·width²`` in the linear layers and ``2·width`` per key it attends to
        (forward and backward of QKᵀ and AV), so a row of ``L`` tokens costs ``L·(1 + L/(6·width))`` units.
        Packing without a variable-length kernel attends over the whole packed row; padding attends over the
        longest sample of the micro-batch.
        """
        def row(n: int) -> float:
            return n * (1 + n / (6 * max(width, 1)))

        in_order = [self.lengths[i:i + batch] for i in range(0, len(self.lengths), batch)]
        if how == "packing":
            return sum(row(sum(g)) for g in in_order)
        groups = self.grouped_rows(batch) if how == "grouping" else in_order
        return sum(len(g) * row(max(g)) for g in groups)


@dataclass(frozen=True)
class ModelShape:
    """What the planner reads from a model's config; zeros are estimated from the parameter count."""

    params: int
    hidden: int = 0
    intermediate: int = 0
    layers: int = 0
    vocab: int = 0

    def filled(self) -> ModelShape:
        """This shape with every unknown field estimated: ~12·hidden² parameters a layer and ~hidden/100 layers
        (glm-4-9b: 4096 wide, 40 layers)."""
        hidden = self.hidden or round((self.params * 100 / 12) ** (1 / 3))
        layers = self.layers or max(1, round(hidden / 100))
        return ModelShape(self.params, hidden, self.intermediate or round(hidden * 8 / 3), layers,
                          self.vocab or 32_000)


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

    config: GlmtuneConfig
    items: list[PlanItem] = field(default_factory=list)
    stats: DataStats | None = None
    params: int = 0

    def value(self, key: str) -> Any:
        """Resolved value of a dotted key."""
        for item in self.items:
            if item.key == key:
                return item.value
        raise KeyError(key)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form for ``glmtune plan --json`` and the run report."""
        data = {k: v for k, v in vars(self.stats).items() if k != "lengths"} if self.stats else None
        return {
            "model_params": self.params,
            "data": data,
            "plan": [vars(item) for item in self.items],
        }


def tier(params: int) -> str:
    """tiny / mid / large, by parameter count."""
    if params < TINY_PARAMS:
        return "tiny"
    return "large" if params >= LARGE_PARAMS else "mid"


def pow2_clamp(x: float, lo: int, hi: int) -> int:
    """Nearest power of two to ``x``, clamped to [lo, hi]."""
    return int(min(hi, max(lo, 2 ** round(math.log2(max(x, 1e-9))))))


def rule_val_size(n: int) -> tuple[int, str]:
    """Validation samples carved from the training file when there is no eval file."""
    if n < 12:
        return 0, f"only {n} samples: too few to hold any out, early stopping is off"
    size = min(200, max(4, round(0.1 * n)))
    return size, f"10% of {n} samples, at least 4 and at most 200"


def rule_global_batch(n: int) -> tuple[int, str]:
    """Samples per optimiser step: small data gets small batches, so it still gets many updates."""
    value = pow2_clamp(n / 16, 2, 32)
    return value, f"about samples/16 ({n}/16) as a power of two, between 2 and 32"


def rule_micro_batch(global_batch: int, params: int) -> tuple[int, str]:
    """Per-device micro-batch; large models accumulate instead."""
    if params >= LARGE_PARAMS:
        return 1, "model of 3B+ parameters: micro-batch 1, reach the global batch by accumulation"
    value = min(global_batch, 8 if tier(params) == "mid" else global_batch)
    return value, f"fits the global batch of {global_batch} in memory for a {tier(params)} model"


def rule_batching(stats: DataStats, micro: int, attn: str, width: int, mixed: bool = False) -> tuple[str, str]:
    """Packing, length grouping or plain padding, from the length distribution and the attention kernel.

    ``mixed``: replay samples are mixed in. Length grouping would then sort task and replay samples into separate
    batches, so only the choices that keep batches random (packing, plain padding) are weighed.
    """
    pad = stats.pad_fraction(micro)
    if micro <= 1:
        return "none", "micro-batch of 1: nothing to pad"
    if pad < 0.10:
        return "none", f"only {pad:.0%} padding expected at micro-batch {micro}"
    if attn.startswith("flash_attention"):
        return "packing", (f"{pad:.0%} padding expected at micro-batch {micro}; packing removes it exactly and "
                           f"{attn} keeps attention within each sample")
    packed = stats.step_cost(micro, width, "packing")
    flat = micro * stats.total_tokens / max(stats.samples, 1)
    head = f"{pad:.0%} padding expected at micro-batch {micro}; packed rows of ~{flat:.0f} tokens under a block mask"
    if mixed:
        plain = stats.step_cost(micro, width, "plain")
        compare = (f"{head} ({attn}) cost an estimated {packed / plain:.2f}x padded batches at width {width}; "
                   "replay is mixed in, so batches stay random (length grouping would separate task and replay)")
        return ("packing" if packed < plain else "none"), compare
    grouped = stats.step_cost(micro, width, "grouping")
    compare = f"{head} ({attn}) cost an estimated {packed / grouped:.2f}x length-grouped batches at width {width}"
    return ("packing" if packed < grouped else "grouping"), compare


def rule_chunked_loss(fsdp: str | None) -> tuple[bool, str]:
    """The loss from hidden states, a chunk of logits at a time, unless FSDP owns the output layer."""
    if fsdp:
        return False, "FSDP gathers the output layer only inside the model's forward: full logits"
    return True, (f"loss over trained positions only, {LOSS_CHUNK_TOKENS:,} rows of logits at a time: no tokens x "
                  "vocabulary tensor (same loss and gradients)")


def rule_checkpointing(stats: DataStats, micro: int, max_length: int, shape: ModelShape, weight_bytes: int,
                       act_bytes: int, device_memory: int = 0, head_rows: int = 0,
                       anchor: bool = False) -> tuple[bool | str, str]:
    """Selective checkpointing when it frees more memory than the weights take (and at least 64 MiB) or the
    device would be tight without it; full checkpointing when even selective would not fit.

    Per token, a decoder layer keeps about ``16·hidden + 5·intermediate`` activations for the backward pass
    (norms, projections, the gated MLP, LoRA inputs) and the head about ``3·vocab`` (``5·vocab`` with the base
    anchor, whose base-model logits and their log-softmax live beside the fine-tune's). Selective checkpointing
    keeps the matmul and attention outputs, about ``7·hidden + 2·intermediate``, and recomputes the rest of one
    layer at a time; full checkpointing keeps only each layer's input and recomputes one whole layer at a time.
    Attention scores are not counted (fused attention kernels do not keep them; without one the estimate is
    low, which errs towards speed). The longest micro-batch is ``micro`` samples of the longest length.
    """
    s = shape.filled()
    tokens = max(1, micro) * max(1, min(stats.max_tokens or max_length, max_length))
    per_token_layer = 16 * s.hidden + 5 * s.intermediate
    kept = 7 * s.hidden + 2 * s.intermediate
    # weights, and the head's logits, softmax and gradient (one chunk of rows with the chunked loss)
    base = s.params * weight_bytes + min(tokens, head_rows or tokens) * (5 if anchor else 3) * s.vocab * act_bytes
    none = base + s.layers * tokens * per_token_layer * act_bytes
    selective = base + tokens * (s.layers * kept + per_token_layer - kept) * act_bytes
    full = base + tokens * (s.layers * s.hidden + per_token_layer) * act_bytes
    weights = s.params * weight_bytes
    freed = none - selective
    est = (f"estimated peak {gib(none)} without, {gib(selective)} selective, {gib(full)} full "
           f"(micro-batch of {tokens:,} tokens)")
    if device_memory and selective > 0.8 * device_memory:
        return True, (f"{est}: even selective exceeds 80% of the device's {gib(device_memory)}; full checkpointing "
                      "recomputes every layer (30-60% more time on CPU)")
    if device_memory and none > 0.8 * device_memory:
        return "selective", (f"{est}: over 80% of the device's {gib(device_memory)} without; selective "
                             "recomputes only norms, activations and rotary embeddings (~20% more time on CPU)")
    if freed < MIN_CHECKPOINT_SAVING:
        return False, f"{est}: selective would free only {gib(freed)}, too little to recompute for"
    if freed > weights:
        return "selective", (f"{est}: selective frees {gib(freed)} of activations, more than the weights take "
                             f"({gib(weights)}), and recomputes no matrix product (~20% more time on CPU)")
    return False, (f"{est}: selective would free only {gib(freed)}, less than the weights take ({gib(weights)}); "
                   "not worth recomputing for")


def gib(n: float) -> str:
    """Bytes as GiB (or MiB below one GiB), for plan reasons."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def rule_epochs(n: int, params: int) -> tuple[float, str]:
    """Epochs from a budget of sample visits: tiny models need many more updates per sample."""
    visits = 3000 if tier(params) == "tiny" else 300
    value = float(min(100, max(1, math.ceil(visits / max(n, 1)))))
    return value, f"{visits} sample visits / {n} samples ({tier(params)} model), between 1 and 100; early stopping cuts it short"


def rule_targets(n: int, params: int, method: str) -> tuple[Any, str]:
    """Which modules LoRA adapts."""
    if tier(params) == "tiny":
        return "all-linear", "tiny model: q/k/v alone barely moves it; the MLPs carry facts such as names"
    if n >= 5000:
        return "all-linear", f"{n} samples: enough data to use the capacity of every linear layer"
    return ["q_proj", "k_proj", "v_proj"], "official GLM-4 targets (q/k/v) for small and mid-sized data"


def rule_rank(trained_tokens: int, total_tokens: int = 0) -> tuple[int, str]:
    """LoRA rank grows with the amount of supervised signal (counted after weighted sampling)."""
    of = f" (of {total_tokens:,} tokens in the weighted training samples)" if total_tokens else ""
    for limit, r in ((20_000, 8), (200_000, 16), (2_000_000, 32)):
        if trained_tokens < limit:
            return r, f"{trained_tokens:,} supervised tokens{of} < {limit:,}"
    return 64, f"{trained_tokens:,} supervised tokens{of} >= 2,000,000"


def rule_eval_steps(steps: int, target: int = 20) -> tuple[int, str]:
    """Evaluate about ``target`` times; the reason states how many evaluations the run really makes."""
    every = max(1, steps // target)
    runs = steps // every
    return every, f"every {every} step(s): {runs} evaluations over {steps} steps (aiming for about {target})"


def rule_patience(eval_steps: int, steps: int, patience: int = 5) -> tuple[int, str]:
    """Early-stopping patience in evaluations; the reason gives the steps and share of the run it waits."""
    wait = patience * eval_steps
    share = f"{min(wait, steps) / max(steps, 1):.0%} of the {steps}-step run"
    return patience, (f"{patience} evaluations without a better validation loss: {wait} steps at eval_steps "
                      f"{eval_steps}, {share}")


def rule_lr(method: str, params: int, n: int) -> tuple[float, str]:
    """Peak learning rate by method and model tier."""
    if method in ("full", "freeze"):
        value = 1e-3 if tier(params) == "tiny" else 5e-5
        return value, f"{method} fine-tuning: official sft.yaml uses 5e-5 for 9B; tiny models tolerate 1e-3"
    if method == "ptuning":
        return 1e-2, "prefix tuning trains few parameters from scratch: a high rate (P-tuning v2 practice)"
    if tier(params) == "tiny":
        return 5e-4, ("LoRA on every linear layer of a tiny model: 5e-4 adopts a new identity as fast as 2e-3 "
                      "and keeps far more of its skills (bench/RESULTS.md, quality benchmark)")
    if n >= 10_000:
        return 3e-4, f"{n} samples: many steps, a lower peak than the official 5e-4"
    return 5e-4, "official GLM-4 LoRA learning rate"


def rule_self_replay(n: int, has_replay_file: bool) -> tuple[float, str]:
    """How many samples of the base model's own behaviour to mix in, per training sample."""
    if has_replay_file:
        return 0.0, "data.replay_file provides general data"
    if n < SELF_REPLAY_BELOW:
        return SELF_REPLAY_RATIO, (f"{n} samples trained for many epochs pull every answer towards them; "
                                   "the base model's own answers keep its other skills (bench/RESULTS.md)")
    return 0.0, f"{n} samples: enough data to keep the model general"


def make_plan(config: GlmtuneConfig, stats: DataStats, params: int, has_eval_file: bool,
              shape: ModelShape | None = None, device_memory: int = 0, bf16: bool = False) -> Plan:
    """Resolve every ``auto`` value of ``config``; return the resolved copy and the reasons.

    ``shape`` holds the model's layer sizes (estimated from ``params`` where missing); ``device_memory`` the
    accelerator's bytes (0 on CPU) and ``bf16`` the training precision, which the checkpointing rule weighs.
    """
    cfg = config.model_copy(deep=True)
    plan = Plan(config=cfg, stats=stats, params=params)
    n = stats.samples

    def decide(section: Any, name: str, key: str, auto: tuple[Any, str]) -> Any:
        current = getattr(section, name)
        if current == "auto":
            setattr(section, name, auto[0])
            plan.items.append(PlanItem(key, auto[0], auto[1], "auto"))
        else:
            plan.items.append(PlanItem(key, current, "set in config", "config"))
        return getattr(section, name)

    d, t, lora = cfg.data, cfg.training, cfg.peft.lora
    plan.items.append(PlanItem("peft.method", cfg.peft.method, "set in config" if "method" in
                               cfg.peft.model_fields_set else "default: LoRA adapters", "config"))
    val = 0
    if not has_eval_file:
        val = decide(d, "val_size", "data.val_size", rule_val_size(n))
    else:
        plan.items.append(PlanItem("data.val_size", 0, "data.eval_file is set", "config"))
    n_train = max(1, n - val)
    if cfg.peft.method == "lora":
        decide(lora, "target_modules", "peft.lora.target_modules", rule_targets(n_train, params, cfg.peft.method))
        r = decide(lora, "r", "peft.lora.r", rule_rank(stats.trained_tokens, stats.total_tokens))
        decide(lora, "alpha", "peft.lora.alpha", (max(32, 2 * r), "max(32, 2r): the official scale of 4 at r=8"))
        decide(lora, "dropout", "peft.lora.dropout",
               (0.1 if n_train < 1000 else 0.05, f"{n_train} samples: " +
                ("official 0.1 against over-fitting" if n_train < 1000 else "more data, less dropout")))
    decide(t, "learning_rate", "training.learning_rate", rule_lr(cfg.peft.method, params, n_train))
    decide(t, "lr_scheduler_type", "training.lr_scheduler_type",
           ("cosine", "smooth decay to zero; pairs with warm-up to keep the first steps small"))
    decide(t, "warmup_ratio", "training.warmup_ratio", (0.05, "5% warm-up: no full-size step on a cold optimizer"))
    if d.replay_file:
        decide(d, "replay_ratio", "data.replay_ratio",
               (0.2 if n_train < 1000 else 0.1, "one general sample per 5 (small data) or 10 task samples"))
    else:
        decide(d, "replay_ratio", "data.replay_ratio", (0.0, "no data.replay_file"))
    decide(d, "self_replay", "data.self_replay", rule_self_replay(n_train, bool(d.replay_file)))
    decide(d, "identity_replay", "data.identity_replay", rule_identity_replay(cfg.identity.name))
    anchor = decide(t, "base_anchor", "training.base_anchor", rule_base_anchor(cfg.peft.method, n_train))
    decide(cfg.identity, "unlikelihood", "identity.unlikelihood",
           rule_unlikelihood(cfg.identity.name, float(anchor)))
    n_mixed = mixed_samples(cfg, n_train)
    general = mixed_samples(cfg, n_train, identity=False) > n_train  # general samples that batches must mix in
    global_batch = rule_global_batch(n_mixed)
    if general and global_batch[0] < MIXED_MIN_BATCH:
        global_batch = (MIXED_MIN_BATCH, f"at least {MIXED_MIN_BATCH} when replay samples are mixed in, so every "
                        "step sees task and replay samples together (smaller batches alternate between them "
                        "and their losses spike)")
    explicit_micro = t.per_device_train_batch_size != "auto"
    micro = decide(t, "per_device_train_batch_size", "training.per_device_train_batch_size",
                   rule_micro_batch(global_batch[0], params))
    accum_reason = f"global batch {global_batch[0]} ({global_batch[1]}) / micro-batch {micro}"
    if explicit_micro:
        accum_reason = f"micro-batch {micro} set in config; no accumulation"
    decide(t, "gradient_accumulation_steps", "training.gradient_accumulation_steps",
           (1 if explicit_micro else max(1, global_batch[0] // micro), accum_reason))
    shape = (shape or ModelShape(params)).filled()
    rule = rule_batching(stats, int(micro), cfg.model.attn_implementation, shape.hidden, mixed=general)
    packing = decide(d, "packing", "data.packing", (rule[0] == "packing", rule[1]))
    decide(d, "group_by_length", "data.group_by_length",
           (rule[0] == "grouping" and not packing, rule[1] if not packing else "packing already removes padding"))
    full_ft = cfg.peft.method not in ("lora", "ptuning")
    # Full fine-tuning keeps fp32 weights, gradients and two AdamW moments; adapters keep frozen weights only.
    weight_bytes = 16 if full_ft else (2 if bf16 else 4)
    chunked = decide(t, "chunked_loss", "training.chunked_loss", rule_chunked_loss(t.fsdp))
    decide(t, "gradient_checkpointing", "training.gradient_checkpointing",
           (False, "P-tuning v2 (PEFT prefix tuning) does not work with activation checkpointing")
           if cfg.peft.method == "ptuning" else
           rule_checkpointing(stats, int(micro), d.max_length, shape, weight_bytes, 2 if bf16 else 4, device_memory,
                              head_rows=LOSS_CHUNK_TOKENS if chunked else 0, anchor=float(anchor) > 0))
    if t.max_steps > 0:
        plan.items.append(PlanItem("training.max_steps", t.max_steps, "set in config", "config"))
    else:
        # renamed identity answers are more answers to the same questions: the visit budget covers them too
        decide(t, "num_train_epochs", "training.num_train_epochs", rule_epochs(taught_samples(cfg, n_train), params))
    steps = total_steps(cfg, n_train)
    mixed = f" + {n_mixed - n_train} replay" if n_mixed > n_train else ""
    plan.items.append(PlanItem("training.total_steps", steps, f"{n_train} training samples{mixed}, "
                               f"batch {micro}×{t.gradient_accumulation_steps}", "auto"))
    decide(t, "weight_decay", "training.weight_decay",
           (0.01, "mild pull towards the base weights: implicit regularisation on small data"))
    decide(t, "neftune_noise_alpha", "training.neftune_noise_alpha",
           (0.0, "off on a tiny model: alpha-5 noise is large next to 128-wide embeddings")
           if tier(params) == "tiny" else
           ((5.0, "small data on a real model: NEFTune noise (alpha 5) against memorising phrasing")
            if n_train < 5000 else (0.0, f"{n_train} samples: enough data, no noise needed")))
    has_val = has_eval_file or val > 0
    every = decide(t, "eval_steps", "training.eval_steps", rule_eval_steps(steps))
    decide(t, "patience", "training.patience", rule_patience(int(every), steps))
    if t.early_stopping and not has_val:
        t.early_stopping = False
        plan.items.append(PlanItem("training.early_stopping", False, "no validation data: cannot stop early", "auto"))
    else:
        plan.items.append(PlanItem("training.early_stopping", t.early_stopping,
                                   "set in config" if "early_stopping" in t.model_fields_set else
                                   "default: stop when validation loss stops improving, keep the best", "config"))
    return plan


def rule_identity_replay(name: str | None) -> tuple[bool, str]:
    """Identity replay stays opt-in: it removes leaks of the old maker but costs skills on the quality benchmark."""
    if not name:
        return False, "identity.name is not set"
    return False, ("opt-in: on the quality benchmark it cut leakage of the old maker to 0.00-0.04 but cost skill "
                   "retention and brought rare loops (bench/RESULTS.md); set true when the old identity leaks")


def rule_base_anchor(method: str, n: int) -> tuple[float, str]:
    """Weight of the KL term that anchors a fine-tune to its base model where the data agrees with the base."""
    if method not in ("lora", "ptuning"):
        return 0.0, f"{method} fine-tuning keeps no base model to anchor to"
    if n >= ANCHOR_BELOW:
        return 0.0, f"{n} samples: enough data to keep the model general (saves a forward pass per step)"
    return ANCHOR_WEIGHT, (f"{n} samples trained for many epochs: keep the base model's distribution wherever "
                           "the data agrees with it (skills kept, fewer spikes: bench/RESULTS.md)")


def rule_unlikelihood(name: str | None, anchor: float) -> tuple[float, str]:
    """Weight of the unlikelihood term on the old identity's tokens: on with a new name and the base anchor."""
    if not name:
        return 0.0, "identity.name is not set: no old identity to unlearn"
    if anchor <= 0:
        return 0.0, ("training.base_anchor is off: without it the term cost skills on the quality benchmark "
                     "(bench/RESULTS.md); set 1.0 when the old name leaks back")
    return UNLIKELIHOOD_WEIGHT, (f"a new identity ({name}): the old names lose probability at every trained "
                                 "position; the base anchor keeps the skills it would cost (bench/RESULTS.md)")


def taught_samples(cfg: GlmtuneConfig, n_train: int) -> int:
    """Training samples plus identity-replay samples, counted at their most (one per sample, up to 512)."""
    renamed = cfg.data.identity_replay is True and bool(cfg.identity.name)
    return n_train + (min(n_train, IDENTITY_REPLAY_MAX) if renamed else 0)


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


def model_shape(name_or_path: str, trust_remote_code: bool = False) -> ModelShape:
    """Parameter count and layer sizes from the model's config alone (weights are not loaded; 0 where unnamed)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from glmtune.models import check_model_path

    check_model_path(name_or_path)
    config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    text = getattr(config, "text_config", None) or config

    def size(name: str) -> int:
        return int(getattr(text, name, 0) or 0)

    return ModelShape(sum(p.numel() for p in model.parameters()), size("hidden_size"), size("intermediate_size"),
                      size("num_hidden_layers"), size("vocab_size"))


def model_param_count(name_or_path: str, trust_remote_code: bool = False) -> int:
    """Parameter count from the model's config alone (weights are not loaded)."""
    return model_shape(name_or_path, trust_remote_code).params
