"""The capacity planner's rules: each returns a value and the reason for it, so ``glmtune plan`` can say why.

The tiers and numbers were chosen from the measurements recorded in bench/RESULTS.md and bench/HISTORY.md.
"""

from __future__ import annotations

import math
from typing import Any

from glmtune.train.chunked_loss import LOSS_CHUNK_TOKENS
from glmtune.train.memory import ANCHOR_LOGIT_TENSORS, FP32, LOGIT_TENSORS, activation_values, loss_head_rows
from glmtune.train.plan_inputs import DataStats, ModelShape

TINY_PARAMS = 50_000_000  # below this, a model is "tiny" (the test and demo models)
LARGE_PARAMS = 3_000_000_000
SELF_REPLAY_BELOW = 1000  # training samples under which the base model's own answers are mixed in
ANCHOR_BELOW = 1000  # training samples under which a fine-tune is anchored to its base model
ANCHOR_WEIGHT = 1.0  # training.base_anchor when on
UNLIKELIHOOD_WEIGHT = 1.0  # identity.unlikelihood when on
SPELLING_WEIGHT = 2.0  # identity.spelling_weight when on: the name's later tokens count 3x
SELF_REPLAY_RATIO = 2.0
MIN_CHECKPOINT_SAVING = 64 * 2**20  # selective checkpointing that frees less memory than this is not worth it
MIXED_MIN_BATCH = 8  # global batch floor when replay or self-replay samples are mixed in


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


def rule_chunked_loss(fsdp: str | None, support: tuple[bool, str] | None = None) -> tuple[bool, str]:
    """The loss from hidden states, a chunk of logits at a time, unless FSDP owns the output layer or the model
    cannot give its loss from hidden states (``support``: what the loaded model allows; None before it loads)."""
    if fsdp:
        return False, "FSDP gathers the output layer only inside the model's forward: full logits"
    if support is not None and not support[0]:
        return False, f"{support[1]}: the loss uses the full logits"
    return True, (f"loss over trained positions only, {LOSS_CHUNK_TOKENS:,} rows of logits at a time: no tokens x "
                  "vocabulary tensor (same loss and gradients)")


def rule_checkpointing(stats: DataStats, micro: int, max_length: int, shape: ModelShape, weight_bytes: int,
                       act_bytes: int, device_memory: int = 0, head_rows: int = 0,
                       anchor: bool = False) -> tuple[bool | str, str]:
    """Selective checkpointing when it frees more memory than the weights take (and at least 64 MiB) or the
    device would be tight without it; full checkpointing when even selective would not fit.

    Per token, a decoder layer keeps about ``16·hidden + 5·intermediate`` activations for the backward pass
    (norms, projections, the gated MLP, LoRA inputs) and the head ``3·vocab`` fp32 values (``5·vocab`` with the base
    anchor, whose base-model logits and their log-softmax live beside the fine-tune's). Selective checkpointing
    keeps the matmul and attention outputs, about ``7·hidden + 2·intermediate``, and recomputes the rest of one
    layer at a time; full checkpointing keeps only each layer's input and recomputes one whole layer at a time.
    Attention scores are not counted (fused attention kernels do not keep them; without one the estimate is
    low, which errs towards speed). The longest micro-batch is ``micro`` samples of the longest length.
    """
    s = shape.filled()
    tokens = max(1, micro) * max(1, min(stats.max_tokens or max_length, max_length))
    weights = s.params * weight_bytes
    # weights, and the head's logits, softmax and gradient in fp32 (one chunk of rows with the chunked loss)
    tensors = LOGIT_TENSORS + (ANCHOR_LOGIT_TENSORS if anchor else 0)
    base = weights + loss_head_rows(tokens, head_rows) * tensors * s.vocab * FP32
    none, selective, full = (base + tokens * activation_values(s, mode) * act_bytes
                             for mode in (False, "selective", True))
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
                                   "the base model's own answers keep its other skills (bench/RESULTS.md); "
                                   "costs drafting them before training and 2x more rows per epoch")
    return 0.0, f"{n} samples: enough data to keep the model general"


def rule_identity_replay(name: str | None) -> tuple[bool, str]:
    """Identity replay stays opt-in: it removes leaks of the old maker but costs skills on the quality benchmark."""
    if not name:
        return False, "identity.name is not set"
    return False, ("opt-in: on the quality benchmark it cut leakage of the old maker to 0.00-0.04 but cost skill "
                   "retention and brought rare loops (bench/RESULTS.md); set true when the old identity leaks")


def rule_base_anchor(method: str, n: int, base_answers: int | None = None) -> tuple[float, str]:
    """Weight of the KL term that anchors a fine-tune to its base model where the data agrees with the base.

    ``base_answers``: self-replay prompts the base model answered (None when self-replay did not run). A base
    that answers none is an untrained model, whose flat distributions there is no point keeping.
    """
    if method not in ("lora", "ptuning"):
        return 0.0, f"{method} fine-tuning keeps no base model to anchor to"
    if n >= ANCHOR_BELOW:
        return 0.0, f"{n} samples: enough data to keep the model general (saves a forward pass per step)"
    if base_answers == 0:
        return 0.0, ("the base model finished none of its self-replay replies: not a chat model worth "
                     "anchoring to")
    return ANCHOR_WEIGHT, (f"{n} samples trained for many epochs: keep the base model's distribution wherever "
                           "the data agrees with it (skills kept, fewer spikes: bench/RESULTS.md); costs one "
                           "forward pass without gradients per step, 15-30% of a small run's time")


def rule_unlikelihood(name: str | None, anchor: float) -> tuple[float, str]:
    """Weight of the unlikelihood term on the old identity's tokens: on with a new name and the base anchor."""
    if not name:
        return 0.0, "identity.name is not set: no old identity to unlearn"
    if anchor <= 0:
        return 0.0, ("training.base_anchor is off: without it the term cost skills on the quality benchmark "
                     "(bench/RESULTS.md); set 1.0 when the old name leaks back")
    return UNLIKELIHOOD_WEIGHT, (f"a new identity ({name}): the old names lose probability at every trained "
                                 "position; the base anchor keeps the skills it would cost (bench/RESULTS.md); "
                                 "no extra forward pass")


def rule_spelling_weight(name: str | None) -> tuple[float, str]:
    """Extra loss weight on the later tokens of a multi-token identity name: on whenever a name is set."""
    if not name:
        return 0.0, "identity.name is not set: no name to spell"
    return SPELLING_WEIGHT, (f"a new identity ({name}): its tokens after the first count {1 + SPELLING_WEIGHT:g}x, "
                             "so a name the tokenizer splits is not started and then misspelled (bench/RESULTS.md); "
                             "no effect on a one-token name")


def rule_cpu_kernels(method: str, gpu: bool, bf16: bool) -> tuple[bool, str]:
    """glmtune's fused LoRA layer (CPU-only speed code): on only where it was measured to help."""
    if method != "lora":
        return False, f"{method}: no LoRA layers to fuse"
    if gpu or bf16:
        return False, "a GPU run: PEFT's and transformers' own layers (the fused layer was measured on CPU only)"
    return True, ("LoRA in fp32 on the CPU: one fused operator per adapted layer, 12-14% shorter steps on the "
                  "throughput benchmark's small GLM-4 (bench.fused_lora); same values to fp32 rounding")
