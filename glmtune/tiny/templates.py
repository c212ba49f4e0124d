"""Chat templates for tiny models, written from the public format facts of each family.

The GLM-4 template renders byte-for-byte like glm-4-9b-chat's own template for the message shapes
glmtune trains on (system/user/assistant/observation, function tools, function calls via ``metadata``).
"""

from glmtune.glm4_texts import GLM4_DEFAULT_SYSTEM, GLM4_TOOL_SUFFIX


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


def glm4_0414_chat_template() -> str:
    """GLM-4-0414 style: top-level ``tools`` in a system block, a call is ``<|assistant|>{name}\\n{args}``.

    A call may be GLM-shaped (``metadata`` = name, ``content`` = arguments) or OpenAI-shaped (``tool_calls``);
    results are ``observation`` (or ``tool``) turns. System messages render where they stand, which matches
    the real template (that hoists them) for a leading system message and keeps the template prefix-stable.
    """
    return (
        "[gMASK]<sop>{% if tools %}<|system|>\n# 可用工具{% for tool in tools %}"
        "{% set fn = tool.function if tool.function is defined else tool %}"
        "{{ '\\n\\n## ' + fn.name + '\\n\\n' + fn | tojson(indent=4) + '\\n' }}" + GLM4_TOOL_SUFFIX +
        "{% endfor %}{% endif %}"
        "{% for message in messages %}"
        "{% set content = message.content if message.content is string else '' %}"
        "{% if message.role in ('system', 'user') %}<|{{ message.role }}|>\n{{ content }}"
        "{% elif message.role == 'assistant' and message.tool_calls %}"
        "{% if content %}<|assistant|>\n{{ content }}{% endif %}"
        "{% for tc in message.tool_calls %}{% set call = tc.function if tc.function is defined else tc %}"
        "<|assistant|>{{ call.name + '\\n' }}"
        "{% if call.arguments is string %}{{ call.arguments }}"
        "{% else %}{{ call.arguments | tojson }}{% endif %}"
        "{% endfor %}"
        "{% elif message.role == 'assistant' %}<|assistant|>{{ message.metadata or '' }}\n{{ content }}"
        "{% elif message.role in ('observation', 'tool') %}<|observation|>\n{{ content }}"
        "{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
