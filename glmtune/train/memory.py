"""Peak GPU memory of a training run, term by term, from the model's shape and the plan's choices (no GPU needed).

Each term is a small pure function that returns its bytes and its formula:

* weights: every base parameter at the load dtype; under ``model.quantization`` the linear layers' weights at 4 or
  8 bits and the rest in fp32 (``peft.prepare_model_for_kbit_training`` upcasts it), plus one linear layer
  dequantised at a time;
* adapter: the trained parameters glmtune adds (LoRA matrices, prefixes), in fp32;
* gradients: one fp32 gradient per trained parameter;
* optimizer: AdamW's two fp32 moments per trained parameter, plus an fp32 master copy where the trained weights
  are stored in half precision (never in glmtune: trained weights load in fp32 and train under bf16 autocast);
* activations: what the backward pass keeps per token under the activation checkpointing mode (the same
  per-token counts as the planner's rule, ``plan_rules.rule_checkpointing``);
* loss head: the logits, their log-softmax and their gradient, fp32 rows × vocabulary, for every token of the
  micro-batch, or for one chunk of trained rows with ``training.chunked_loss``.

Sizes are per GPU, before DeepSpeed ZeRO or FSDP shard anything. Attention scores are not counted (SDPA and flash
attention do not keep them), nor the CUDA context and allocator slack: a card fits a plan when the total is at
most ``GPU_USABLE`` of its memory.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from glmtune.config.schema import GlmtuneConfig
from glmtune.train.plan_inputs import ModelShape

GPU_SIZES_GB = (24, 40, 80)  # the usual cards: RTX 4090 / L4 / A10, A100 40 GB, A100 / H100 80 GB
GPU_USABLE = 0.9  # share of a card's memory tensors may take (CUDA context, allocator fragmentation, workspaces)
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4-bit weight, 8-bit absmax per 64 weights, fp32 absmax per 256 blocks
INT8_BYTES = 1.0  # LLM.int8: one byte a weight (its fp32 scale per row is not counted)
QUANT_BYTES = {"4bit": NF4_BYTES, "8bit": INT8_BYTES}
FP32 = 4
ADAM_STATES = 2  # AdamW's first and second moments, fp32 each
LOGIT_TENSORS = 3  # logits, log-softmax, gradient (fp32 rows × vocabulary)
ANCHOR_LOGIT_TENSORS = 2  # the base anchor's base-model logits and their log-softmax
CHECKPOINT_MODES = {False: "none", "selective": "selective", True: "full"}


@dataclass(frozen=True)
class MemorySetup:
    """What the estimate depends on: the model's shape and the plan's choices."""

    shape: ModelShape
    method: str = "lora"  # peft.method
    trainable: int = 0  # parameters trained (adapter, prefix, or base weights for full / freeze)
    bf16: bool = True  # bf16 autocast (activations in 2 bytes) and, for adapters, a bf16 base
    quantization: str = "none"  # model.quantization
    micro_batch: int = 1
    length: int = 1024  # tokens of the longest sample (data.max_length or shorter)
    checkpointing: bool | str = "selective"  # training.gradient_checkpointing
    chunk_rows: int = 0  # rows of logits alive at once with the chunked loss (0: the full logits)
    anchor: bool = False  # training.base_anchor > 0

    @property
    def tokens(self) -> int:
        """Tokens of the longest micro-batch."""
        return max(1, self.micro_batch) * max(1, self.length)


@dataclass(frozen=True)
class MemoryTerm:
    """One term of the estimate: its name, bytes and formula."""

    name: str
    bytes: int
    formula: str


@dataclass(frozen=True)
class MemoryEstimate:
    """The estimated peak memory of one training process, term by term."""

    terms: tuple[MemoryTerm, ...]

    @property
    def total(self) -> int:
        """Sum of the terms in bytes."""
        return sum(t.bytes for t in self.terms)

    def term(self, name: str) -> int:
        """Bytes of the term ``name``."""
        return next(t.bytes for t in self.terms if t.name == name)

    def fits(self, gb: float) -> bool:
        """Whether the total fits a card of ``gb`` GiB (``GPU_USABLE`` of it)."""
        return self.total <= GPU_USABLE * gb * 2**30

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly bytes per term, the total and the cards it fits."""
        return {**{t.name: t.bytes for t in self.terms}, "total": self.total,
                "fits_gb": [gb for gb in GPU_SIZES_GB if self.fits(gb)]}


def size_text(n: float) -> str:
    """Bytes as GiB (or MiB below one GiB)."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def estimated_linears(shape: ModelShape) -> tuple[tuple[str, int, int, int], ...]:
    """The shape's linear layers, or GLM-4's per-layer ones from its sizes (full-width q/k/v/o, fused gate_up)."""
    if shape.linears:
        return shape.linears
    s = shape.filled()
    h, i, n = s.hidden, s.intermediate, s.layers
    return tuple((f"self_attn.{p}", h, h, n) for p in ("q_proj", "k_proj", "v_proj", "o_proj")) + (
        ("mlp.gate_up_proj", h, 2 * i, n), ("mlp.down_proj", i, h, n))


def targeted(name: str, targets: list[str] | str) -> bool:
    """Whether a linear layer named by its last two parts is one of LoRA's ``targets`` (PEFT's suffix match)."""
    if targets == "all-linear":
        return True
    names = [targets] if isinstance(targets, str) else targets
    return any(name == t or name.endswith(f".{t}") or t.endswith(f".{name}") for t in names)


def lora_params(linears: tuple[tuple[str, int, int, int], ...], targets: list[str] | str, r: int) -> int:
    """LoRA parameters: ``r × (in + out)`` for every targeted linear layer (A is r × in, B is out × r)."""
    return sum(r * (i + o) * n for name, i, o, n in linears if targeted(name, targets))


def linear_weights(shape: ModelShape) -> int:
    """Weights of the linear layers (``in × out`` each, biases not counted): what bitsandbytes quantizes."""
    return min(shape.params, sum(i * o * n for _, i, o, n in estimated_linears(shape)))


def trainable_params(shape: ModelShape, method: str, r: int = 8, targets: list[str] | str = "all-linear",
                     virtual_tokens: int = 128, trainable_layers: int = 2) -> int:
    """Parameters the tuning method trains: LoRA matrices, prefixes (tokens × layers × 2 × hidden), the last
    layers (freeze, their share of the non-embedding parameters) or every parameter (full)."""
    s = shape.filled()
    if method == "lora":
        return lora_params(estimated_linears(shape), targets, r)
    if method == "ptuning":
        return virtual_tokens * s.layers * 2 * s.hidden
    if method == "freeze":
        body = max(0, s.params - 2 * s.vocab * s.hidden)
        return min(s.layers, trainable_layers) * body // s.layers + s.hidden
    return s.params


def weight_bytes(setup: MemorySetup) -> MemoryTerm:
    """The base model's weights at their load dtype, quantized linear layers at 4 or 8 bits."""
    params = setup.shape.params
    load = 2 if setup.bf16 and setup.method in ("lora", "ptuning") else FP32
    if setup.quantization not in QUANT_BYTES:
        return MemoryTerm("weights", params * load, f"{params:,} parameters × {load} bytes "
                          f"({'bf16' if load == 2 else 'fp32'})")
    linear = linear_weights(setup.shape)
    bits = QUANT_BYTES[setup.quantization]
    widest = max((i * o for _, i, o, _ in estimated_linears(setup.shape)), default=0)
    total = round(linear * bits) + (params - linear) * FP32 + widest * 2
    return MemoryTerm("weights", total, f"{linear:,} linear weights × {bits:.3f} bytes ({setup.quantization}) + "
                      f"{params - linear:,} other parameters × 4 (fp32 after prepare_model_for_kbit_training) + "
                      f"the widest linear layer dequantised, {widest:,} × 2")


def quantized_weight_bytes(shape: ModelShape, quantization: str) -> float:
    """Bytes per parameter of a base quantized by bitsandbytes (the weights term over the parameter count)."""
    setup = MemorySetup(shape.filled(), quantization=quantization)
    return weight_bytes(setup).bytes / max(1, shape.params)


def adapter_bytes(setup: MemorySetup) -> MemoryTerm:
    """Parameters the method adds to the model (LoRA, prefixes), in fp32; full and freeze add none."""
    if setup.method not in ("lora", "ptuning"):
        return MemoryTerm("adapter", 0, f"{setup.method} fine-tuning adds no parameters")
    return MemoryTerm("adapter", setup.trainable * FP32, f"{setup.trainable:,} {setup.method} parameters × 4 (fp32)")


def gradient_bytes(setup: MemorySetup) -> MemoryTerm:
    """One fp32 gradient per trained parameter."""
    return MemoryTerm("gradients", setup.trainable * FP32, f"{setup.trainable:,} trained parameters × 4 (fp32)")


def optimizer_bytes(setup: MemorySetup, master: bool = False) -> MemoryTerm:
    """AdamW: two fp32 moments per trained parameter, plus an fp32 master copy when ``master``."""
    per = ADAM_STATES * FP32 + (FP32 if master else 0)
    what = "two fp32 moments" + (" + fp32 master copy" if master else "")
    return MemoryTerm("optimizer", setup.trainable * per, f"AdamW: {setup.trainable:,} × {per} ({what})")


def activation_values(shape: ModelShape, mode: bool | str) -> int:
    """Values a token keeps for the backward pass over all layers, by checkpointing mode (see rule_checkpointing):
    none ``layers·(16h + 5i)``; selective ``layers·(7h + 2i)`` plus one layer recomputed; full ``layers·h`` plus
    one layer recomputed."""
    s = shape.filled()
    layer = 16 * s.hidden + 5 * s.intermediate
    if mode == "selective":
        kept = 7 * s.hidden + 2 * s.intermediate
        return s.layers * kept + layer - kept
    if mode:
        return s.layers * s.hidden + layer
    return s.layers * layer


def activation_bytes(setup: MemorySetup) -> MemoryTerm:
    """Activations of the longest micro-batch under the checkpointing mode."""
    s, act = setup.shape.filled(), 2 if setup.bf16 else FP32
    values = activation_values(s, setup.checkpointing)
    mode = CHECKPOINT_MODES.get(setup.checkpointing, str(setup.checkpointing))
    return MemoryTerm("activations", setup.tokens * values * act,
                      f"{setup.tokens:,} tokens × {values:,} values ({mode} checkpointing, {s.layers} layers, "
                      f"hidden {s.hidden}, intermediate {s.intermediate}) × {act} bytes")


def loss_head_rows(tokens: int, chunk_rows: int) -> int:
    """Rows of logits alive at once: every token of the micro-batch, or one chunk of trained rows."""
    return min(tokens, chunk_rows) if chunk_rows else tokens


def loss_head_bytes(setup: MemorySetup) -> MemoryTerm:
    """Logits, log-softmax and gradient (plus the anchor's two) in fp32, rows × vocabulary each."""
    rows, vocab = loss_head_rows(setup.tokens, setup.chunk_rows), setup.shape.filled().vocab
    tensors = LOGIT_TENSORS + (ANCHOR_LOGIT_TENSORS if setup.anchor else 0)
    how = f"chunks of {setup.chunk_rows:,} rows" if setup.chunk_rows else "full logits"
    return MemoryTerm("loss_head", rows * vocab * tensors * FP32,
                      f"{rows:,} rows ({how}) × {vocab:,} vocabulary × {tensors} fp32 tensors")


def estimate_memory(setup: MemorySetup) -> MemoryEstimate:
    """Every term of the peak memory of one training process."""
    return MemoryEstimate((weight_bytes(setup), adapter_bytes(setup), gradient_bytes(setup), optimizer_bytes(setup),
                           activation_bytes(setup), loss_head_bytes(setup)))


def levers(setup: MemorySetup) -> list[tuple[str, dict[str, Any]]]:
    """Changes that lower the peak, as ``(what to set, MemorySetup fields)``, in the order they are suggested."""
    out: list[tuple[str, dict[str, Any]]] = []
    if setup.method == "lora" and setup.quantization == "none":
        out.append(("QLoRA (model.quantization=4bit)", {"quantization": "4bit"}))
    if setup.method in ("full", "freeze"):
        lora = trainable_params(setup.shape, "lora", 8, "all-linear")
        out.append(("peft.method=lora", {"method": "lora", "trainable": lora}))
    if setup.checkpointing is not True:
        out.append(("training.gradient_checkpointing=true", {"checkpointing": True}))
    if setup.micro_batch > 1:
        out.append(("training.per_device_train_batch_size=1", {"micro_batch": 1}))
    return out


def longest_fitting_length(setup: MemorySetup, gb: float) -> int:
    """The longest of 4096/2048/1024/512/256 tokens, shorter than now, at which ``setup`` fits (0: none)."""
    return next((n for n in (4096, 2048, 1024, 512, 256)
                 if n < setup.length and estimate_memory(replace(setup, length=n)).fits(gb)), 0)


def changes_to_fit(setup: MemorySetup, gb: float) -> list[str]:
    """Settings that make ``setup`` fit a card of ``gb`` GiB: single changes, else the levers combined."""
    fitting = [label for label, fields in levers(setup) if estimate_memory(replace(setup, **fields)).fits(gb)]
    if length := longest_fitting_length(setup, gb):
        fitting.append(f"data.max_length={length}")
    if fitting:
        return fitting[:3]
    combined, labels = setup, []
    for label, fields in levers(setup):
        combined = replace(combined, **fields)
        labels.append(label)
        if estimate_memory(combined).fits(gb):
            return [" + ".join(labels)]
    if length := longest_fitting_length(combined, gb):
        return [" + ".join([*labels, f"data.max_length={length}"])]
    return []


def fit_text(setup: MemorySetup, estimate: MemoryEstimate, device_memory: int = 0) -> tuple[str, str]:
    """``(the cards it fits, what to change for the others)``, e.g. ``("40 GB, 80 GB", "for 24 GB: ...")``."""
    fits = [f"{gb} GB" for gb in GPU_SIZES_GB if estimate.fits(gb)]
    advice = []
    for gb in GPU_SIZES_GB:
        if estimate.fits(gb):
            continue
        changes = changes_to_fit(setup, gb)
        advice.append(f"for {gb} GB: " + (" or ".join(changes) if changes else
                                          "shard it across GPUs (DeepSpeed ZeRO-3 or FSDP)"))
    if device_memory:
        here = estimate.total <= GPU_USABLE * device_memory
        advice.insert(0, f"this GPU ({size_text(device_memory)}): {'fits' if here else 'does not fit'}")
    usable = f"a card fits when the total is at most {GPU_USABLE:.0%} of its memory"
    return (", ".join(fits) or "none of " + "/".join(map(str, GPU_SIZES_GB)) + " GB",
            "; ".join(advice + [usable]))


def plan_setup(cfg: GlmtuneConfig, shape: ModelShape, micro: int, max_tokens: int, bf16: bool,
               anchor: bool) -> MemorySetup:
    """The estimate's inputs for a planned config (every ``auto`` already resolved)."""
    from glmtune.train.chunked_loss import LOSS_CHUNK_TOKENS

    t, lora, peft = cfg.training, cfg.peft.lora, cfg.peft
    r = int(lora.r) if lora.r != "auto" else 8
    trainable = trainable_params(shape, peft.method, r, "all-linear" if lora.target_modules == "auto" else
                                 lora.target_modules, peft.ptuning.num_virtual_tokens, peft.freeze.trainable_layers)
    moe = shape.moe
    if peft.method == "lora" and lora.moe_experts and moe is not None:  # stacked gate_up (h × 2m) and down (m × h)
        hidden = shape.filled().hidden
        width = moe.expert_params // (3 * hidden)
        trainable += moe.layers * moe.experts * r * (3 * hidden + 3 * width)
    length = min(max_tokens or cfg.data.max_length, cfg.data.max_length)
    checkpointing = t.gradient_checkpointing if t.gradient_checkpointing != "auto" else False
    return MemorySetup(shape, peft.method, trainable, bf16, cfg.model.quantization, micro, length, checkpointing,
                       LOSS_CHUNK_TOKENS if t.chunked_loss is True else 0, anchor)


def memory_items(cfg: GlmtuneConfig, shape: ModelShape, micro: int, max_tokens: int, bf16: bool, anchor: bool,
                 device_memory: int = 0) -> tuple[MemoryEstimate, list[tuple[str, Any, str]]]:
    """The estimate for a planned config, and its plan rows ``(key, value, reason)``: a row per term, the total
    and the cards it fits, with what to change for the others."""
    setup = plan_setup(cfg, shape, micro, max_tokens, bf16, anchor)
    estimate = estimate_memory(setup)
    rows: list[tuple[str, Any, str]] = [(f"memory.{t.name}", size_text(t.bytes), t.formula) for t in estimate.terms]
    sharded = (" (DeepSpeed ZeRO / FSDP shard weights, gradients and optimizer state across GPUs)"
               if cfg.training.deepspeed or cfg.training.fsdp else "")
    rows.append(("memory.peak", size_text(estimate.total), "estimated peak GPU memory of one training process: "
                 f"the sum of the memory.* rows above, before sharding{sharded}; not counted: CUDA context, "
                 "allocator slack, attention scores of eager attention"))
    fits, advice = fit_text(setup, estimate, device_memory)
    rows.append(("memory.fits", fits, advice))
    return estimate, rows


def estimate_for_config(config: Any, *, method: str = "lora", max_length: int = 1024, micro_batch: int = 1,
                        quantization: str = "none", bf16: bool = True, checkpointing: bool | str = "selective",
                        chunked_loss: bool = True, lora_r: int = 8, targets: list[str] | str | None = None,
                        anchor: bool = False) -> MemoryEstimate:
    """Estimate from a transformers config alone (e.g. ``AutoConfig.from_pretrained("THUDM/glm-4-9b-chat-hf")``):
    the parameters are counted on the meta device, so a 9B model needs no memory and no weights. ``targets``:
    LoRA's target modules (default: GLM-4's official q/k/v)."""
    from glmtune.train.chunked_loss import LOSS_CHUNK_TOKENS
    from glmtune.train.plan_inputs import shape_from_config

    shape = shape_from_config(config)
    targets = targets or ["q_proj", "k_proj", "v_proj"]
    setup = MemorySetup(shape, method, trainable_params(shape, method, lora_r, targets), bf16, quantization,
                        micro_batch, max_length, checkpointing, LOSS_CHUNK_TOKENS if chunked_loss else 0, anchor)
    return estimate_memory(setup)


def estimate_text(estimate: MemoryEstimate) -> str:
    """The estimate as plain-text lines: one per term with its formula, then the total and the cards it fits."""
    lines = [f"{t.name:<12} {size_text(t.bytes):>10}  {t.formula}" for t in estimate.terms]
    fits = ", ".join(f"{gb} GB" for gb in GPU_SIZES_GB if estimate.fits(gb)) or "none of 24/40/80 GB"
    return "\n".join([*lines, f"{'peak':<12} {size_text(estimate.total):>10}  fits {fits}"])


def main(argv: list[str] | None = None) -> int:
    """``python -m glmtune.train.memory MODEL``: the estimate from a model folder or hub id's config.json alone."""
    import argparse

    from transformers import AutoConfig

    parser = argparse.ArgumentParser(prog="python -m glmtune.train.memory", description=main.__doc__)
    parser.add_argument("model", help="model folder (config.json is enough) or hub id")
    parser.add_argument("--method", default="lora", choices=["lora", "ptuning", "full", "freeze"])
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--micro-batch", type=int, default=1)
    parser.add_argument("--quantization", default="none", choices=["none", "4bit", "8bit"])
    parser.add_argument("--checkpointing", default="selective", choices=["false", "selective", "true"])
    parser.add_argument("--no-chunked-loss", action="store_true")
    parser.add_argument("--fp32", action="store_true", help="fp32 training instead of bf16")
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--targets", default="q_proj,k_proj,v_proj", help="comma-separated, or all-linear")
    args = parser.parse_args(argv)
    config = AutoConfig.from_pretrained(args.model)
    mode = {"false": False, "selective": "selective", "true": True}[args.checkpointing]
    targets = "all-linear" if args.targets == "all-linear" else args.targets.split(",")
    estimate = estimate_for_config(config, method=args.method, max_length=args.max_length,
                                   micro_batch=args.micro_batch, quantization=args.quantization, bf16=not args.fp32,
                                   checkpointing=mode, chunked_loss=not args.no_chunked_loss, lora_r=args.lora_r,
                                   targets=targets)
    print(estimate_text(estimate))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
