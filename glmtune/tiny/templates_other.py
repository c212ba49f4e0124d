"""Chat templates for the non-GLM tiny families (Qwen2.5, Qwen3, Llama-3), written from public format facts.

Each template is compact Jinja for transformers' environment (``trim_blocks`` and ``lstrip_blocks`` on), so
no literal newline ever follows a ``%}`` tag: such newlines are written as ``{{ '\\n' }}`` expressions.
Qwen2.5 and Llama-3 are prefix-stable: rendering the first k messages gives a prefix of rendering all of
them (except between two consecutive tool results, which Qwen groups into one user turn). Qwen3, like the
real one, is not: it drops the reasoning of replies before the last user query.
"""

from __future__ import annotations

import json

QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
QWEN_TOOLS_HEAD = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
QWEN_TOOLS_TAIL = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n'
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)
LLAMA3_TOOLS_HEAD = (
    "Given the following functions, please respond with a JSON for a function call with its proper arguments "
    'that best answers the given prompt.\n\nRespond in the format {"name": function name, "parameters": '
    "dictionary of argument name and its value}.Do not use variables.\n\n"
)

# One tool call, OpenAI-shaped ({"function": {...}}) or bare ({"name", "arguments"}); string arguments are
# written as they are, anything else as JSON.
_CALL = "{% set call = tc.function if tc.function is defined else tc %}"
_ARGS = (
    "{% if call.arguments is string %}{{ call.arguments }}"
    "{% else %}{{ call.arguments | tojson }}{% endif %}"
)


def _literal(text: str) -> str:
    """``text`` as a Jinja string literal."""
    return json.dumps(text, ensure_ascii=False)


def chatml_template(default_system: str | None, thinking: bool) -> str:
    """Qwen-style ChatML: Qwen2.5 with ``default_system`` and no thinking, Qwen3 with thinking and no default.

    Tools come from the top-level ``tools`` argument and sit in the system block; assistant ``tool_calls``
    render as ``<tool_call>`` JSON; consecutive ``tool`` results share one user turn of ``<tool_response>``s.
    With ``thinking`` (as Qwen3's own template): an assistant's reasoning (``reasoning_content``, or a
    ``<think>...</think>`` prefix of its content) renders as ``<think>\n{reasoning}\n</think>\n\n{content}``
    only after the last user query, and there only for the last message or when the reasoning is not
    empty; replies before the last user query lose their reasoning. ``enable_thinking=False`` appends an
    empty think block to the generation prompt. So the template is not prefix-stable: a reply renders with
    its think block while it is the last message and without it once the conversation goes on.
    """
    default = "none" if default_system is None else _literal(default_system)
    last_query, think, prompt_tail = _thinking_parts() if thinking else ("", "{{ content }}", "")
    return (
        last_query + "{% if messages and messages[0].role == 'system' %}{% set system = messages[0].content %}"
        "{% else %}{% set system = " + default + " %}{% endif %}"
        "{% if tools %}<|im_start|>system\n{% if system is not none %}{{ system + '\\n\\n' }}{% endif %}"
        + QWEN_TOOLS_HEAD + "{% for tool in tools %}{{ '\\n' + tool | tojson }}{% endfor %}"
        + "{{ " + _literal(QWEN_TOOLS_TAIL) + " }}<|im_end|>\n"
        "{% elif system is not none %}<|im_start|>system\n{{ system }}<|im_end|>\n{% endif %}"
        "{% for message in messages %}"
        "{% set content = message.content if message.content is string else '' %}"
        "{% if message.role == 'user' or (message.role == 'system' and not loop.first) %}"
        "<|im_start|>{{ message.role + '\\n' + content }}<|im_end|>\n"
        "{% elif message.role == 'assistant' %}<|im_start|>assistant\n" + think +
        "{% if message.tool_calls %}{% for tc in message.tool_calls %}" + _CALL +
        "{% if content or not loop.first %}{{ '\\n' }}{% endif %}"
        '<tool_call>\n{"name": "{{ call.name }}", "arguments": ' + _ARGS + "{{ '}\\n</tool_call>' }}"
        "{% endfor %}{% endif %}<|im_end|>\n"
        "{% elif message.role == 'tool' %}"
        "{% if loop.first or messages[loop.index0 - 1].role != 'tool' %}<|im_start|>user{% endif %}"
        "{{ '\\n<tool_response>\\n' + content + '\\n</tool_response>' }}"
        "{% if loop.last or messages[loop.index0 + 1].role != 'tool' %}<|im_end|>\n{% endif %}"
        "{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n" + prompt_tail + "{% endif %}"
    )

def _thinking_parts() -> tuple[str, str, str]:
    """Qwen3's thinking pieces: find the last user query, render a reply's reasoning, and the prompt's tail."""
    last_query = (
        "{% set ns = namespace(last_query=messages | length - 1) %}{% for message in messages %}"
        "{% if message.role == 'user' and not (message.content is string "
        "and message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}"
        "{% set ns.last_query = loop.index0 %}{% endif %}{% endfor %}"
    )
    think = (
        "{% set reasoning = message.reasoning_content if message.reasoning_content is string else '' %}"
        "{% if message.reasoning_content is not string and '</think>' in content %}"
        "{% set reasoning = content.split('</think>')[0].rstrip('\\n')"
        ".split('<think>')[-1].lstrip('\\n') %}"
        "{% set content = content.split('</think>')[-1].lstrip('\\n') %}{% endif %}"
        "{% if loop.index0 > ns.last_query and (loop.last or reasoning) %}"
        "{{ '<think>\\n' + reasoning.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}"
        "{% else %}{{ content }}{% endif %}"
    )
    prompt_tail = "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
    return last_query, think, prompt_tail



def qwen2_chat_template() -> str:
    """Qwen2.5-Instruct ChatML: default system prompt, tools in the system block, ``<tool_call>`` calls."""
    return chatml_template(QWEN_DEFAULT_SYSTEM, thinking=False)


def qwen3_chat_template() -> str:
    """Qwen3 ChatML: no default system prompt, ``<think>`` only after the last query, ``enable_thinking``."""
    return chatml_template(None, thinking=True)


def llama3_chat_template() -> str:
    """Llama-3-Instruct headers; with ``tools``, the first user message carries them as JSON (as Llama-3.1).

    A call renders as an assistant turn ``{"name": ..., "parameters": ...}``, a tool result as an ``ipython``
    turn. Message content is trimmed, as in Meta's template; one tool call per assistant message.
    """
    header = "<|start_header_id|>{{ message.role }}<|end_header_id|>\n\n"
    return (
        "{% set ns = namespace(tools_done=false) %}{{ bos_token }}"
        "{% for message in messages %}"
        "{% if message.role in ('tool', 'ipython') %}<|start_header_id|>ipython<|end_header_id|>\n\n"
        "{% if message.content is string %}{{ message.content }}"
        "{% else %}{{ message.content | tojson }}{% endif %}"
        "<|eot_id|>"
        "{% elif message.role == 'assistant' and message.tool_calls %}"
        "{% if message.tool_calls | length != 1 %}"
        "{{ raise_exception('Llama-3 supports one tool call per assistant message') }}{% endif %}"
        "{% set tc = message.tool_calls[0] %}" + _CALL +
        '<|start_header_id|>assistant<|end_header_id|>\n\n{"name": "{{ call.name }}", "parameters": '
        + _ARGS + "{{ '}' }}<|eot_id|>"
        "{% else %}" + header +
        "{% if tools and message.role == 'user' and not ns.tools_done %}{% set ns.tools_done = true %}"
        + LLAMA3_TOOLS_HEAD + "{% for tool in tools %}{{ tool | tojson(indent=4) + '\\n\\n' }}{% endfor %}"
        "{% endif %}{{ (message.content if message.content is string else '') | trim }}<|eot_id|>"
        "{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    )
