"""``ResolvedConfig``: the planned config with no ``auto`` left where the planner decides, kept in step with the schema."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from glmtune.config.loader import validate_config
from glmtune.config.resolved import (
    RUNTIME_AUTO,
    SECTIONS,
    ResolvedConfig,
    UnresolvedError,
    planned_keys,
    resolve_config,
)
from glmtune.config.schema import GlmtuneConfig
from glmtune.train.plan import DataStats, make_plan


def config(**sections: dict[str, Any]) -> GlmtuneConfig:
    """A minimal config with ``sections`` merged in."""
    data: dict[str, Any] = {"model": {"name_or_path": "m"}, "data": {"train_file": "t.jsonl"}}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return validate_config(data)


def planned(cfg: GlmtuneConfig) -> Any:
    """``cfg`` planned for a small dataset on a 1M-parameter model."""
    return make_plan(cfg, DataStats(30, 600, 1500), params=1_000_000, has_eval_file=False)


@pytest.mark.parametrize("sections", [
    {}, {"peft": {"method": "ptuning"}}, {"peft": {"method": "full"}, "training": {"max_steps": 5}},
    {"data": {"train_file": "t.jsonl", "replay_file": "r.jsonl"}, "identity": {"name": "Nova"}},
])
def test_a_planned_config_resolves_and_dumps_as_planned(sections: dict[str, Any]) -> None:
    plan = planned(config(**sections))
    resolved = plan.config
    assert isinstance(resolved, ResolvedConfig)
    assert resolved.training.per_device_train_batch_size >= 1 and isinstance(resolved.data.packing, bool)
    # what config.yaml and every checkpoint hold is unchanged: keys that do not apply are still written as auto
    cfg = config(**sections)
    dumped = resolved.model_dump(mode="json")
    assert dumped.keys() == cfg.model_dump(mode="json").keys()
    assert resolve_config(GlmtuneConfig.model_validate(dumped)).model_dump(mode="json") == dumped
    for key in planned_keys():
        section, name = key.rsplit(".", 1)
        value = dumped
        for part in section.split("."):
            value = value[part]
        assert (value[name] == "auto") == (getattr(_section(resolved, section), name) is None), key


def _section(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def test_keys_that_do_not_apply_are_none() -> None:
    ptuning = planned(config(peft={"method": "ptuning"})).config
    assert (ptuning.peft.lora.r, ptuning.peft.lora.alpha, ptuning.peft.lora.dropout) == (None, None, None)
    assert planned(config(training={"max_steps": 5})).config.training.num_train_epochs is None
    lora = planned(config()).config
    assert lora.peft.lora.r is not None and lora.training.num_train_epochs is not None


def test_an_auto_left_fails_naming_the_key() -> None:
    cfg = planned(config()).config
    left = GlmtuneConfig.model_validate(cfg.model_dump())
    left.data.packing = "auto"
    left.training.eval_steps = "auto"
    with pytest.raises(UnresolvedError, match=r"data\.packing, training\.eval_steps"):
        resolve_config(left)
    with pytest.raises(UnresolvedError, match=r"peft\.lora\.r\b"):  # a LoRA run needs its rank
        resolve_config(GlmtuneConfig.model_validate(
            {**cfg.model_dump(), "peft": {**cfg.peft.model_dump(), "lora": {"r": "auto"}}}))


def test_none_is_refused_where_the_key_applies() -> None:
    dumped = planned(config()).config.model_dump()
    dumped["peft"]["lora"]["r"] = None
    with pytest.raises(ValidationError, match="peft.lora.r unset"):
        ResolvedConfig.model_validate(dumped)
    dumped = planned(config()).config.model_dump()
    dumped["training"]["num_train_epochs"] = None
    with pytest.raises(ValidationError, match="num_train_epochs unset"):
        ResolvedConfig.model_validate(dumped)


def sections(root: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """Every section class under ``root`` by dotted prefix (``peft.lora``, ``training``, ...)."""
    found: dict[str, type[BaseModel]] = {}

    def walk(cls: type[BaseModel], prefix: str) -> None:
        for name, info in cls.model_fields.items():
            if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
                found[prefix + name] = info.annotation
                walk(info.annotation, f"{prefix}{name}.")

    walk(root, "")
    return found


def test_resolved_sections_match_the_schema() -> None:
    """Same field names and defaults; the narrowed fields are exactly the schema's ``X | Auto`` minus runtime ones."""
    schema = sections(GlmtuneConfig)
    assert {prefix: sections(ResolvedConfig)[prefix] for prefix in SECTIONS} == SECTIONS
    for prefix, resolved in SECTIONS.items():
        base = schema[prefix]
        assert issubclass(resolved, base) and resolved.model_fields.keys() == base.model_fields.keys(), prefix
        own = inspect.get_annotations(resolved)
        for name, info in resolved.model_fields.items():
            if name in own:  # narrowed: required, and the schema's type without Auto (None where unused)
                want = inspect.get_annotations(base)[name].removesuffix(" | Auto")
                assert own[name] in (want, f"Unused[{want}]") and info.is_required(), f"{prefix}.{name}"
            else:
                assert info.default == base.model_fields[name].default, f"{prefix}.{name}"
    auto = {f"{prefix}.{name}" for prefix, cls in schema.items() for name, ann in inspect.get_annotations(cls).items()
            if ann.endswith("| Auto") or ann.endswith("Literal['auto']")}  # the source as Python unparses it
    assert auto == set(planned_keys()) | set(RUNTIME_AUTO)
    assert not set(planned_keys()) & set(RUNTIME_AUTO)
