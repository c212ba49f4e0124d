"""Mixture-of-experts models (GLM-4.5's Glm4MoeForCausalLM and the like): what the planner and LoRA need to know.

An MoE layer holds a router (``mlp.gate``: one weight row per routed expert, plus GLM-4.5's
``e_score_correction_bias``), ``n`` routed experts stored as stacked 3-D parameters (``mlp.experts.gate_up_proj``,
``mlp.experts.down_proj``) of which each token uses ``k``, and shared experts every token uses. Everything here is
read from the model's config and modules (a meta-device copy will do), never from its name:

* total parameters count every expert; active parameters per token leave out the ``n - k`` routed experts a token
  does not visit, in every MoE layer;
* LoRA adapts the linear layers (attention, the dense layers' MLPs, the shared experts) as modules, never the router,
  and the routed experts only on request (``peft.lora.moe_experts``) through PEFT's ``target_parameters``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from glmtune.errors import UserError

EXPERT_COUNT_KEYS = ("n_routed_experts", "num_experts", "num_local_experts")
TOP_K_KEYS = ("num_experts_per_tok", "moe_topk", "num_experts_per_token")
EXPERT_DROPOUT = ("peft.lora.moe_experts: PEFT's adapters on stacked expert weights (lora.ParamWrapper) take no "
                  "dropout, and PEFT has one dropout for every adapted layer")


@dataclass(frozen=True)
class MoeShape:
    """An MoE model's experts: counts, sizes, and the names LoRA targets by (suffixes PEFT matches)."""

    experts: int  # routed experts per MoE layer
    per_token: int  # routed experts chosen per token
    layers: int  # MoE layers
    expert_params: int  # parameters of one routed expert
    lora_modules: tuple[str, ...]  # linear layers: attention, dense MLPs, shared experts (never the router)
    expert_parameters: tuple[str, ...]  # the routed experts' stacked weights (PEFT target_parameters)
    routers: tuple[str, ...]  # router modules (``mlp.gate``), never adapted

    @property
    def inactive_params(self) -> int:
        """Routed-expert parameters a token does not use: ``layers × (experts − per_token) × expert_params``."""
        return self.layers * (self.experts - self.per_token) * self.expert_params

    def active(self, total: int) -> int:
        """Parameters one token runs through, of ``total``."""
        return total - self.inactive_params


def routed_experts(config: Any) -> tuple[int, int] | None:
    """``(routed experts, experts per token)`` from a model config; None for a dense model."""
    text = getattr(config, "text_config", None) or config

    def first(keys: tuple[str, ...]) -> int:
        return next((int(v) for k in keys if isinstance(v := getattr(text, k, None), int) and v > 0), 0)

    n, k = first(EXPERT_COUNT_KEYS), first(TOP_K_KEYS)
    return (n, k) if n > 1 and k else None


def suffix(name: str, parts: int = 2) -> str:
    """The last ``parts`` dotted components of a module name (``model.layers.1.mlp.gate`` -> ``mlp.gate``)."""
    return ".".join(name.split(".")[-parts:])


def moe_shape(model: Any, config: Any) -> MoeShape | None:
    """The experts of ``model`` (meta or real) whose config names routed experts; None for a dense model.

    A routed-experts module holds 3-D parameters whose first dimension is the expert count; a router is a sibling of
    it (same parent) with a 2-D weight of one row per expert. Every ``nn.Linear`` except routers, one-output gates
    and the output layer is a LoRA module.
    """
    import torch

    counts = routed_experts(config)
    if counts is None:
        return None
    n, k = counts
    modules = dict(model.named_modules())
    per_expert: list[int] = []
    stacked: set[str] = set()
    routers: set[str] = set()
    for name, module in modules.items():
        weights = [(p_name, p) for p_name, p in module.named_parameters(recurse=False) if p.dim() == 3 and p.shape[0] == n]
        if not weights or "." not in name:
            continue
        per_expert.append(sum(p.numel() for _, p in weights) // n)
        stacked.update(f"{suffix(name)}.{p_name}" for p_name, _ in weights)
        parent = name.rpartition(".")[0]
        routers.update(other for other, child in modules.items() if other.rpartition(".")[0] == parent
                       and any(p.dim() == 2 and p.shape[0] == n for p in child.parameters(recurse=False)))
    if not per_expert:
        return None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    linear = [suffix(name) for name, m in modules.items() if isinstance(m, torch.nn.Linear) and m is not head
              and name not in routers and m.out_features not in (1, n)]
    return MoeShape(n, k, len(per_expert), max(per_expert), tuple(dict.fromkeys(linear)), tuple(sorted(stacked)),
                    tuple(sorted({suffix(r) for r in routers})))


def lora_targets(targets: list[str] | str, moe: MoeShape, experts: bool,
                 dropout: float = 0.0) -> tuple[list[str], list[str] | None]:
    """PEFT ``(target_modules, target_parameters)`` for an MoE model.

    ``all-linear`` becomes the model's linear layers (the router excluded); a bare name such as ``gate_proj``
    becomes the dotted names of the layers it ends (``mlp.gate_proj``, ``shared_experts.gate_proj``), so PEFT adapts
    the dense and shared MLPs instead of converting the name into the routed experts; ``experts`` adds the routed
    experts' stacked weights (which need ``dropout`` 0). Naming a router is refused.
    """
    if experts and dropout:
        raise UserError(f"peft.lora.dropout is {dropout}, but {EXPERT_DROPOUT}: set it to 0 (or leave it at auto)")
    names = list(moe.lora_modules) if targets == "all-linear" else [targets] if isinstance(targets, str) else targets
    routers = {r.rpartition(".")[2] for r in moe.routers}
    named_routers = [t for t in names if t in moe.routers or t in routers]
    if named_routers:
        raise UserError(f"peft.lora.target_modules names the MoE router ({', '.join(named_routers)}): glmtune "
                        "never adapts routers (they pick each token's experts; see docs on MoE fine-tuning)")
    modules: list[str] = []
    for name in names:
        dotted = [m for m in moe.lora_modules if m.endswith(f".{name}")] if "." not in name else []
        modules += dotted or [name]
    return list(dict.fromkeys(modules)), (list(moe.expert_parameters) if experts else None)


def rule_moe_targets(moe: MoeShape) -> tuple[list[str], str]:
    """Default LoRA modules of an MoE model: every linear layer, which leaves out the router and routed experts."""
    return list(moe.lora_modules), (
        f"MoE model: attention, the dense layers' MLPs and the shared experts as modules (every token uses them); "
        f"never the router ({', '.join(moe.routers)}): adapting it would move which experts each token reaches; "
        "routed experts: see peft.lora.moe_experts")


def moe_experts_reason(moe: MoeShape, experts: bool, set_in_config: bool) -> str:
    """Why the routed experts are (not) adapted."""
    if set_in_config:
        return "set in config" + (f": LoRA on {', '.join(moe.expert_parameters)} via PEFT target_parameters"
                                  if experts else "")
    return (f"default off: an adapter per routed expert multiplies the adapter and its optimizer memory by "
            f"{moe.experts} in {moe.layers} MoE layer(s), while each token trains only {moe.per_token} of them; "
            "true adds them via PEFT target_parameters")


def size_text(n: float) -> str:
    """Bytes as GiB (or MiB below one GiB)."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def moe_size_items(moe: MoeShape, total: int, bf16: bool, method: str) -> list[tuple[str, Any, str]]:
    """Plan items ``(key, value, reason)``: total and active parameters per token, and the weights' memory."""
    active = moe.active(total)
    width, dtype = (2, "bf16") if bf16 else (4, "fp32")
    extra = ("; full fine-tuning adds gradients and two AdamW moments for every one of them"
             if method == "full" else "")
    return [
        ("model.total_params", total, f"every parameter, all {moe.experts} routed experts of each of the "
         f"{moe.layers} MoE layer(s) included"),
        ("model.active_params", active, f"per token: {total:,} − {moe.layers} MoE layer(s) × "
         f"({moe.experts} − {moe.per_token}) routed experts not chosen × {moe.expert_params:,} parameters an expert "
         f"= {active:,} ({active / max(total, 1):.0%}); compute per token follows this number"),
        ("model.weight_memory", size_text(total * width), f"{total:,} total parameters × {width} bytes ({dtype} "
         f"training): every expert stays in memory although a token uses {moe.per_token} of {moe.experts}{extra}"),
    ]
