"""The model families ``make_tiny`` can build: architecture, real special-token strings and a chat template.

Model classes are named, not imported, so reading a family (its stop strings, say) does not load torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from glmtune.glm4_texts import GLM4_STOP_STRINGS
from glmtune.tiny.templates import glm4_0414_chat_template, glm4_chat_template, glm_z1_chat_template
from glmtune.tiny.templates_glm45 import GLM45_SPECIAL_TOKENS, glm45_chat_template
from glmtune.tiny.templates_other import llama3_chat_template, qwen2_chat_template, qwen3_chat_template
from glmtune.tiny.tokenizer import GLM4_SPECIAL_TOKENS

QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
# Qwen marks these as ordinary added tokens (special=False): one id each, but kept by skip_special_tokens.
QWEN2_ADDED_TOKENS = (
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>",
)
QWEN3_ADDED_TOKENS = QWEN2_ADDED_TOKENS + ("<tool_response>", "</tool_response>", "<think>", "</think>")
LLAMA3_SPECIAL_TOKENS = (
    "<|begin_of_text|>", "<|end_of_text|>", "<|finetune_right_pad_id|>", "<|start_header_id|>",
    "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
)


@dataclass(frozen=True)
class TinyFamily:
    """One family: transformers class names, token strings (all ids looked up by string) and chat template."""

    name: str
    config_class: str
    model_class: str
    special_tokens: tuple[str, ...]
    eos: str
    pad: str
    stop: tuple[str, ...]
    template: str
    added_tokens: tuple[str, ...] = ()
    bos: str | None = None
    add_bos: bool = False

    def classes(self) -> tuple[Any, Any]:
        """The transformers ``(config class, model class)``."""
        import transformers

        return getattr(transformers, self.config_class), getattr(transformers, self.model_class)

    @property
    def all_tokens(self) -> tuple[str, ...]:
        """Every special and added token string of the family."""
        return self.special_tokens + self.added_tokens


QWEN_STOP = ("<|im_end|>", "<|endoftext|>")

FAMILIES: dict[str, TinyFamily] = {
    f.name: f
    for f in (
        TinyFamily("glm4", "Glm4Config", "Glm4ForCausalLM", tuple(GLM4_SPECIAL_TOKENS), eos="<|endoftext|>",
                   pad="<|endoftext|>", stop=GLM4_STOP_STRINGS, template=glm4_chat_template()),
        TinyFamily("glm4-0414", "Glm4Config", "Glm4ForCausalLM", tuple(GLM4_SPECIAL_TOKENS),
                   eos="<|endoftext|>", pad="<|endoftext|>", stop=GLM4_STOP_STRINGS,
                   template=glm4_0414_chat_template()),
        TinyFamily("glm-z1", "Glm4Config", "Glm4ForCausalLM", tuple(GLM4_SPECIAL_TOKENS),
                   eos="<|endoftext|>", pad="<|endoftext|>", stop=GLM4_STOP_STRINGS,
                   template=glm_z1_chat_template()),
        # GLM-4.5-style MoE (Glm4MoeForCausalLM): GLM-4's tokens plus GLM-4.5's think/tool tokens
        TinyFamily("glm4-moe", "Glm4MoeConfig", "Glm4MoeForCausalLM",
                   tuple(GLM4_SPECIAL_TOKENS) + GLM45_SPECIAL_TOKENS, eos="<|endoftext|>", pad="<|endoftext|>",
                   stop=GLM4_STOP_STRINGS, template=glm45_chat_template()),
        TinyFamily("qwen2", "Qwen2Config", "Qwen2ForCausalLM", QWEN_SPECIAL_TOKENS, eos="<|im_end|>",
                   pad="<|endoftext|>", stop=QWEN_STOP, template=qwen2_chat_template(),
                   added_tokens=QWEN2_ADDED_TOKENS),
        TinyFamily("qwen3", "Qwen3Config", "Qwen3ForCausalLM", QWEN_SPECIAL_TOKENS, eos="<|im_end|>",
                   pad="<|endoftext|>", stop=QWEN_STOP, template=qwen3_chat_template(),
                   added_tokens=QWEN3_ADDED_TOKENS),
        # Like Meta's tokenizer, plain encoding prepends <|begin_of_text|>; the template writes it too, so
        # tokenize rendered chats with add_special_tokens=False (apply_chat_template does).
        TinyFamily("llama3", "LlamaConfig", "LlamaForCausalLM", LLAMA3_SPECIAL_TOKENS, eos="<|eot_id|>",
                   pad="<|end_of_text|>", stop=("<|eot_id|>", "<|end_of_text|>"),
                   template=llama3_chat_template(), bos="<|begin_of_text|>", add_bos=True),
    )
}
FAMILY_NAMES = tuple(FAMILIES)


def get_family(name: str) -> TinyFamily:
    """The family called ``name``; unknown names raise a ``UserError`` listing the choices."""
    from glmtune.errors import UserError

    if name not in FAMILIES:
        raise UserError(f"unknown model family {name!r}; choose one of {', '.join(FAMILY_NAMES)}")
    return FAMILIES[name]
