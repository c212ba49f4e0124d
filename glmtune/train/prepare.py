"""The data phase of a run: tokenizer, layout, encoded data and the plan drafted from them (no model loaded)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from glmtune.config.loader import ConfigError, data_sources
from glmtune.config.schema import GlmtuneConfig
from glmtune.data.train_clean import CleanSettings
from glmtune.glm4_texts import GLM4_DEFAULT_SYSTEM
from glmtune.layout import get_layout
from glmtune.layout.encode import EncodeSpec
from glmtune.layout.glm4 import rewrite_tool_prompt
from glmtune.layout.verify import verify_layout
from glmtune.models import load_tokenizer
from glmtune.train.dataset import Encoded, encode_sources
from glmtune.train.plan import ModelFacts, Plan, make_plan
from glmtune.train.plan_inputs import DataStats, model_shape
from glmtune.train.precision import resolve_precision
from glmtune.train.stream import StreamedData, check_streaming, resolve_streaming

log = logging.getLogger(__name__)


@dataclass
class PreparedRun:
    """Everything known before the model loads: tokenizer, layout, encoded data and the plan drafted from them.

    The draft plan has every value that does not depend on the loaded model; ``plan_with`` makes the final one
    once the model has shown what it can do (``ModelFacts``).
    """

    tokenizer: Any
    layout: Any
    train: Encoded
    eval: Encoded | None
    plan: Plan
    stream: StreamedData | None = None
    inputs: dict[str, Any] = field(default_factory=dict)  # make_plan's arguments besides config and facts

    def plan_with(self, config: GlmtuneConfig, facts: ModelFacts) -> Plan:
        """The plan for ``config`` with what the loaded model showed."""
        return make_plan(config, facts=facts, **self.inputs)


def prepare_run(config: GlmtuneConfig, out: Path | None) -> PreparedRun:
    """Load the tokenizer, encode the data (writing rejects into ``out`` when given) and make the plan."""
    tokenizer = load_tokenizer(config.model.name_or_path, config.model.trust_remote_code)
    identity = config.identity
    rewrite = identity.rewrite_tool_prompt
    if rewrite == "auto":
        rewrite = bool(identity.name) and GLM4_DEFAULT_SYSTEM in str(tokenizer.chat_template or "")
    if rewrite:
        if not identity.name:
            raise ConfigError("identity.rewrite_tool_prompt needs identity.name")
        rewrite_tool_prompt(tokenizer, identity.name, identity.author)
        log.info(f"identity: the tool system prompt now introduces {identity.name} (saved with the adapter's tokenizer)")
    layout = get_layout(tokenizer)
    data = config.data
    log.info(f"layout: {layout.name}; stop ids {layout.stop_ids}")
    values = {k: v for k, v in (("name", config.identity.name), ("author", config.identity.author)) if v}
    spec = EncodeSpec(layout, data.combine, data.max_length, data.truncation, values,
                      CleanSettings(data.repair, identity.name, identity.author, identity.conflicts == "drop"),
                      train_reasoning=data.train_reasoning)
    common = {"seed": config.training.seed, "cache": data.cache, "cache_dir": data.cache_dir, "num_proc": data.num_proc}
    sources = data_sources(data.train_file)
    streaming, why = resolve_streaming(data.streaming, sources)
    stream = None
    if streaming:
        check_streaming(config, sources, why)
        log.info(f"streaming: on ({why}); samples are read and tokenized while training")
        stream = StreamedData(sources, spec, out / "rejected.jsonl" if out else None)
        train_enc, stats = stream.probe(data.max_reject_ratio)
    else:
        train_enc = encode_sources(sources, spec, rejects_path=out / "rejected.jsonl" if out else None,
                                   max_reject_ratio=data.max_reject_ratio, **common)
        lengths = train_enc.lengths
        stats = DataStats(len(train_enc.rows), train_enc.result.trained_tokens, sum(lengths), max(lengths), lengths)
    eval_enc = None
    if data.eval_file:
        eval_enc = encode_sources(data_sources(data.eval_file), spec,
                                  rejects_path=out / "rejected_eval.jsonl" if out else None, **common)
    checked = verify_layout(layout, tokenizer, [c.messages for c in train_enc.conversations.head(16)], data.combine)
    log.info(f"layout verified on {checked} conversations: ids equal the chat template, every trained span is a "
             "reply ending in a stop token")
    if identity.name:
        warn_identity(train_enc.conversations, identity.name, identity.author, bool(rewrite))
    shape = model_shape(config.model.name_or_path, config.model.trust_remote_code)
    memory = torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else 0
    inputs = {"stats": stats, "params": shape.params, "has_eval_file": eval_enc is not None, "shape": shape,
              "device_memory": memory, "bf16": resolve_precision(config.training).bf16,
              "streaming": (streaming, why)}
    plan = make_plan(config, **inputs)
    return PreparedRun(tokenizer, layout, train_enc, eval_enc, plan, stream, inputs)


def warn_identity(convs: list[Any], name: str, author: str | None, rewritten: bool) -> None:
    """Warn, with counts and samples, when the data asserts an identity other than the declared one."""
    from glmtune.data.identity_guard import format_warning, scan_identity

    scan = scan_identity(convs, name, author)
    if rewritten:
        scan.tool_prompt, scan.tool_prompt_samples = 0, []
    warning = format_warning(scan)
    if warning:
        log.warning(f"identity warning: {warning}")
        if scan.tool_prompt and not rewritten:
            log.warning("  set identity.rewrite_tool_prompt: true to render the tool prompt with your identity")
