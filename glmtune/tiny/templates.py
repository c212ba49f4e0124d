"""Chat templates for tiny models, written from the public format facts of each family.

The GLM-4 template renders byte-for-byte like glm-4-9b-chat's own template for the message shapes
glmtune trains on (system/user/assistant/observation, function tools, function calls via ``metadata``).
"""

from glmtune.glm4_texts import GLM4_DEFAULT_SYSTEM, GLM4_TOOL_SUFFIX, GLM_Z1_DEFAULT_SYSTEM


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


def _glm0414_tools(opening: str, first_gap: str) -> str:
    """The 0414 tools block: ``opening``, then each function as pretty JSON (non-ASCII kept)."""
    return (
        "{% if tools %}<|system|>\n" + opening + "# 可用工具{% for tool in tools %}"
        "{% set fn = tool.function if tool.get('function') else tool %}"
        "{{ '" + first_gap + "' if loop.first else '\\n' }}## {{ fn.name }}\n\n"
        "{{ fn | tojson(indent=4, ensure_ascii=False) }}\n" + GLM4_TOOL_SUFFIX + "{% endfor %}{% endif %}"
    )


def _glm0414_turns(text: str) -> str:
    """0414 turns: system messages first, then user/assistant/observation only (any other role is dropped)."""
    return (
        "{% for m in messages if m.role == 'system' %}<|system|>\n{{ m.content }}{% endfor %}"
        "{% for m in messages if m.role != 'system' %}{% set text = " + text + " %}"
        "{% if m.role == 'user' %}<|user|>\n{{ text }}"
        "{% elif m.role == 'assistant' and m.get('metadata') %}<|assistant|>{{ m.metadata }}META\n{{ text }}"
        "{% elif m.role == 'assistant' %}<|assistant|>\n{{ text }}"
        "{% elif m.role == 'observation' %}<|observation|>\n{{ text }}{% endif %}{% endfor %}"
    )


def glm4_0414_chat_template() -> str:
    """GLM-4-0414: top-level ``tools`` in a system block, system messages first, a call is
    ``<|assistant|>{name} \\n{args}``, results are ``observation`` turns; other roles and ``tool_calls`` are
    not rendered (glmtune lays calls out in this native form)."""
    return ("[gMASK]<sop>" + _glm0414_tools("", "\\n\\n") + _glm0414_turns("m.content").replace("META", " ")
            + "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def glm_z1_chat_template() -> str:
    """GLM-Z1-0414: 0414's layout with the identity sentence before the tools, every turn shown as the text
    after its last ``</think>`` (past reasoning dropped), and a generation prompt that opens ``<think>``."""
    visible = "m.content.split('</think>')[-1].strip()"
    return ("[gMASK]<sop>" + _glm0414_tools(GLM_Z1_DEFAULT_SYSTEM + "\n\n", "\\n")
            + _glm0414_turns(visible).replace("META", "")
            + "{% if add_generation_prompt %}<|assistant|>\n<think>{% endif %}")
