"""Chat templates for tiny models, written from the public format facts of each family.

The GLM-4 template renders byte-for-byte like glm-4-9b-chat's own template for the message shapes
glmtune trains on (system/user/assistant/observation, function tools, function calls via ``metadata``).
"""

from glmtune.layout.glm4 import GLM4_DEFAULT_SYSTEM, GLM4_TOOL_SUFFIX


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
