"""GLM-4's fixed chat-template texts, in one place: the tool system prompt, the tool suffix, the stop strings.

glm-4-9b-chat's template writes a fixed system text in front of tool definitions (reference §2). It introduces
the assistant as ChatGLM, made by Zhipu AI, so glmtune can render it with the declared identity instead
(``identity.rewrite_tool_prompt``) and warns when tool conversations would train the old name
(``glmtune data check``). The tiny GLM-4 templates are written from the same texts.

A primitive: layout/, data/, tiny/ and train/ import it; it imports nothing of glmtune.
"""

from __future__ import annotations

GLM4_STOP_STRINGS = ("<|endoftext|>", "<|user|>", "<|observation|>")
GLM4_DEFAULT_SYSTEM = (
    "你是一个名为 ChatGLM 的人工智能助手。你是基于智谱AI训练的语言模型 GLM-4 模型开发的，"
    "你的任务是针对用户的问题和要求提供适当的答复和支持。"
)
# The part of GLM4_DEFAULT_SYSTEM that names the old identity, as quoted in warnings.
GLM4_TOOL_SYSTEM = GLM4_DEFAULT_SYSTEM.partition("，")[0]
GLM4_TOOL_SUFFIX = "在调用上述函数时，请使用 Json 格式表示调用的参数。"
# GLM-Z1-0414's tool block opens with this wording of the identity sentence (note "智谱 AI 公司").
GLM_Z1_DEFAULT_SYSTEM = (
    "你是一个名为 ChatGLM 的人工智能助手。你是基于智谱 AI 公司训练的语言模型 GLM-4 模型开发的，"
    "你的任务是针对用户的问题和要求提供适当的答复和支持。"
)

__all__ = ["GLM4_DEFAULT_SYSTEM", "GLM_Z1_DEFAULT_SYSTEM", "GLM4_STOP_STRINGS", "GLM4_TOOL_SUFFIX", "GLM4_TOOL_SYSTEM", "identity_system_text"]


def identity_system_text(name: str, author: str | None) -> str:
    """The tool system prompt's first sentence with a declared identity instead of ChatGLM / Zhipu AI."""
    made = f"你是由{author}开发的，" if author else ""
    return f"你是一个名为 {name} 的人工智能助手。{made}你的任务是针对用户的问题和要求提供适当的答复和支持。"
