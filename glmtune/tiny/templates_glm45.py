"""The GLM-4.5 chat template (zai-org/GLM-4.5, GLM-4.5-Air; GLM-4.6 renders the same), written for glmtune.

It renders exactly like the model's own template (tests/tiny/test_templates_glm45.py compares the two on a
varied fixture whenever the reference copy is present):

* ``[gMASK]<sop>``, then, with the ``tools=`` argument, a ``<|system|>`` block that lists each tool as one JSON
  line inside ``<tools></tools>`` and asks for calls in the XML format below;
* ``<|system|>\\n{text}`` and ``<|user|>\\n{text}`` turns (``/nothink`` appended when ``enable_thinking`` is
  false); text may be a string or a list of ``{"type": "text"}`` parts;
* ``<|assistant|>\\n<think>{reasoning}</think>`` for replies after the last user turn that carry reasoning
  (``reasoning_content``, or ``<think>…</think>`` inline in the content), ``\\n<think></think>`` for every other
  reply, then ``\\n{content}`` when there is any;
* each tool call as ``\\n<tool_call>{name}\\n<arg_key>k</arg_key>\\n<arg_value>v</arg_value>\\n…</tool_call>``,
  non-string values JSON-encoded (``arguments`` must be a mapping, as in the original);
* ``tool`` results: consecutive ones share one ``<|observation|>``, each as ``\\n<tool_response>\\n…\\n</tool_response>``;
* the generation prompt ``<|assistant|>``, or ``<|assistant|>\\n<think></think>`` when ``enable_thinking`` is false.

The template text contains no raw line break after a block tag, so transformers' ``trim_blocks`` and
``lstrip_blocks`` change nothing in it.
"""

from __future__ import annotations

# Added special tokens of GLM-4.5's tokenizer beyond GLM-4's: one id each, dropped by skip_special_tokens.
GLM45_SPECIAL_TOKENS = (
    "<think>", "</think>", "<tool_call>", "</tool_call>", "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>",
    "<tool_response>", "</tool_response>",
)
GLM45_TOOLS_INTRO = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
)
GLM45_TOOLS_FORMAT = (
    "</tools>\n\nFor each function call, output the function name and arguments within the following XML "
    "format:\n<tool_call>{function-name}\n<arg_key>{arg-key-1}</arg_key>\n<arg_value>{arg-value-1}</arg_value>\n"
    "<arg_key>{arg-key-2}</arg_key>\n<arg_value>{arg-value-2}</arg_value>\n...\n</tool_call>"
)
NO_THINKING = "enable_thinking is defined and not enable_thinking"

_TEXT_MACRO = (  # a message's text: a string, or the text parts of a list (anything else as it prints)
    "{% macro glm_text(c) %}{% if c is string %}{{ c }}"
    "{% elif c is iterable and c is not mapping %}{% for part in c %}"
    "{% if part is mapping and part.type == 'text' %}{{ part.text }}{% elif part is string %}{{ part }}{% endif %}"
    "{% endfor %}{% else %}{{ c }}{% endif %}{% endmacro %}"
)
_TOOLS = (
    "{% if tools %}<|system|>\n" + GLM45_TOOLS_INTRO +
    "{% for tool in tools %}{{ tool | tojson(ensure_ascii=False) }}{{ '\\n' }}{% endfor %}"
    + GLM45_TOOLS_FORMAT + "{% endif %}"
)
_LAST_USER = (
    "{% set state = namespace(last_user=-1) %}"
    "{% for m in messages %}{% if m.role == 'user' %}{% set state.last_user = loop.index0 %}{% endif %}{% endfor %}"
)
_USER = (
    "{% set text = glm_text(m.content) %}<|user|>{{ '\\n' + text }}"
    "{% if " + NO_THINKING + " and not text.endswith('/nothink') %}/nothink{% endif %}"
)
_ASSISTANT = (
    "{% set body = glm_text(m.content) %}{% set thought = '' %}"
    "{% if m.reasoning_content is string %}{% set thought = m.reasoning_content %}"
    "{% elif '</think>' in body %}{% set halves = body.split('</think>') %}"
    "{% set thought = halves[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}"
    "{% set body = halves[-1].lstrip('\\n') %}{% endif %}"
    "<|assistant|>{{ '\\n<think>' + (thought.strip() if loop.index0 > state.last_user and thought else '') "
    "+ '</think>' }}"
    "{% if body.strip() %}{{ '\\n' + body.strip() }}{% endif %}"
    "{% for call in m.tool_calls or [] %}{% set fn = call.function if call.function else call %}"
    "{{ '\\n<tool_call>' + fn.name + '\\n' }}{% for key, value in fn.arguments.items() %}"
    "<arg_key>{{ key }}</arg_key>{{ '\\n' }}"
    "<arg_value>{{ value if value is string else value | tojson(ensure_ascii=False) }}</arg_value>{{ '\\n' }}"
    "{% endfor %}</tool_call>{% endfor %}"
)
_TOOL_RESULT = (
    "{% if m.content is string %}"
    "{% if loop.first or loop.previtem.role != 'tool' %}<|observation|>{% endif %}"
    "{{ '\\n<tool_response>\\n' + m.content + '\\n</tool_response>' }}"
    "{% else %}<|observation|>{% for result in m.content %}{{ '\\n<tool_response>\\n' }}"
    "{{ result.output if result.output is defined else result }}{{ '\\n</tool_response>' }}{% endfor %}"
    "{% endif %}"
)


def glm45_chat_template() -> str:
    """GLM-4.5's template: XML tool list and calls, thinking after the last user turn, ``/nothink``."""
    return (
        "[gMASK]<sop>" + _TOOLS + _TEXT_MACRO + _LAST_USER +
        "{% for m in messages %}"
        "{% if m.role == 'user' %}" + _USER +
        "{% elif m.role == 'assistant' %}" + _ASSISTANT +
        "{% elif m.role == 'tool' %}" + _TOOL_RESULT +
        "{% elif m.role == 'system' %}<|system|>{{ '\\n' + glm_text(m.content) }}"
        "{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% if " + NO_THINKING + " %}{{ '\\n<think></think>' }}{% endif %}"
        "{% endif %}"
    )
