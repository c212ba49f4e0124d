"""What the planner reads: the training data's statistics and the model's shape (from its config alone)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from glmtune.train.moe import MoeShape, moe_shape


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
    moe: MoeShape | None = None  # the routed experts of a mixture-of-experts model (None: dense)
    # (name's last two parts, in, out, count) of every nn.Linear but the output layer (empty: unknown)
    linears: tuple[tuple[str, int, int, int], ...] = ()

    def filled(self) -> ModelShape:
        """This shape with every unknown field estimated: ~12·hidden² parameters a layer and ~hidden/100 layers
        (glm-4-9b: 4096 wide, 40 layers)."""
        hidden = self.hidden or round((self.params * 100 / 12) ** (1 / 3))
        layers = self.layers or max(1, round(hidden / 100))
        return ModelShape(self.params, hidden, self.intermediate or round(hidden * 8 / 3), layers,
                          self.vocab or 32_000, self.moe, self.linears)


def model_shape(name_or_path: str, trust_remote_code: bool = False) -> ModelShape:
    """Parameter count and layer sizes from the model's config alone (weights are not loaded; 0 where unnamed)."""
    from transformers import AutoConfig

    from glmtune.models import check_model_path

    check_model_path(name_or_path)
    config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    return shape_from_config(config, trust_remote_code)


def shape_from_config(config: Any, trust_remote_code: bool = False) -> ModelShape:
    """The shape of the model a transformers config describes, counted on the meta device (no memory, no weights)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    text = getattr(config, "text_config", None) or config

    def size(name: str) -> int:
        return int(getattr(text, name, 0) or 0)

    return ModelShape(sum(p.numel() for p in model.parameters()), size("hidden_size"), size("intermediate_size"),
                      size("num_hidden_layers"), size("vocab_size"), moe_shape(model, text), linear_shapes(model))


def linear_shapes(model: Any) -> tuple[tuple[str, int, int, int], ...]:
    """``(name, in, out, count)`` of the linear layers but the output layer, grouped by their names' last two parts."""
    import torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    counts: dict[tuple[str, int, int], int] = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module is not head:
            key = (".".join(name.split(".")[-2:]), module.in_features, module.out_features)
            counts[key] = counts.get(key, 0) + 1
    return tuple((name, i, o, n) for (name, i, o), n in counts.items())


def model_param_count(name_or_path: str, trust_remote_code: bool = False) -> int:
    """Parameter count from the model's config alone (weights are not loaded)."""
    return model_shape(name_or_path, trust_remote_code).params
