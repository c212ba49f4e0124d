"""Chat templates for tiny models, written from the public format facts of each family.

The GLM-4 template renders byte-for-byte like glm-4-9b-chat's own template for the message shapes
glmtune trains on (system/user/assistant/observation, function tools, function calls via ``metadata``).
"""

GLM4_DEFAULT_SYSTEM = (
    "你是一个名为 ChatGLM 的人工智能助手。你是基于智谱AI训练的语言模型 GLM-4 模型开发的，"
    "你的任务是针对用户的问题和要求提供适当的答复和支持。"
)
GLM4_TOOL_SUFFIX = "在调用上述函数时，请使用 Json 格式表示调用的参数。"


def glm4_chat_template(default_system: str = GLM4_DEFAULT_SYSTEM) -> str:
    """The glm-4-9b-chat template: tools ride on a message, a function call carries ``metadata``."""
    return (
        "[gMASK]<sop>{% for item in messages %}"
        "{% if item['tools'] is defined %}<|system|>\n" + default_system + "\n\n# 可用工具"
        "{% set tools = item['tools'] %}{% for tool in tools %}"
        "{% if tool['type'] == 'function' %}\n\n## {{ tool['function']['name'] }}\n\n"
        "{{ tool['function'] | tojson(indent=4) }}\n" + GLM4_TOOL_SUFFIX + "{% endif %}"
        "{% endfor %}{% endif %}"
        "{% if item['content'] %}<|{{ item['role'] }}|>{{ item['metadata'] }}\n{{ item['content'] }}{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
