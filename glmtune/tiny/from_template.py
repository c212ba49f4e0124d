"""A tiny family built around any chat template file: its special tokens are read from the template's text.

The architecture, eos and pad come from a base family (GLM-4 when the template writes ``[gMASK]``, else
Qwen2). Every token-like string the template writes (``<|user|>``, ``[gMASK]``, ``<sop>``, ``<think>``,
``<tool_call>``...) becomes one special token. Which of them end a reply is not decided here: the caller
derives the stop tokens from the built tokenizer's layout and passes them back (``with_stops``).
"""

from __future__ import annotations

import dataclasses
import re

from glmtune.errors import UserError
from glmtune.tiny.families import TinyFamily, get_family

# <|role|>, [gMASK], <sop>/<eop>, and XML-like control tags (<think>, </tool_call>, <arg_key>...) in literal text
TOKEN_PATTERNS = (r"<\|[A-Za-z0-9_]+\|>", r"\[[A-Za-z]*MASK\]", r"</?[a-z][a-z0-9_]*>")
# tags that are jinja or markup inside a template, not model tokens
NOT_TOKENS = {"<tools>", "</tools>"}


def literal_text(template: str) -> str:
    """The template with its jinja tags and comments removed, plus the string literals inside tags."""
    literals = re.findall(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"", " ".join(re.findall(r"{[{%].*?[%}]}", template, re.S)))
    outside = re.sub(r"{#.*?#}|{[{%].*?[%}]}", " ", template, flags=re.S)
    return outside + " " + " ".join(a or b for a, b in literals)


def template_tokens(template: str) -> list[str]:
    """The special-token strings a chat template writes, in order of first appearance."""
    text = literal_text(template)
    found = [m.group(0) for pattern in TOKEN_PATTERNS for m in re.finditer(pattern, text)]
    ordered = sorted(dict.fromkeys(found), key=text.find)
    return [t for t in ordered if t not in NOT_TOKENS]


def template_family(template: str, base: str | None = None) -> TinyFamily:
    """A family with ``base``'s architecture and ``template`` as its chat template and token source."""
    if "{%" not in template and "{{" not in template:
        raise UserError("--chat-template: the file holds no jinja tags ({% ... %} or {{ ... }}); "
                        "is it a chat template?")
    tokens = template_tokens(template)
    if not tokens:
        raise UserError("--chat-template: found no special token (such as <|user|> or <|im_start|>) in the template")
    family = get_family(base or ("glm4" if "[gMASK]" in tokens else "qwen2"))
    if re.search(r"<\|\s*{{", template):  # role tokens written from the role's name: <|{{ role }}|>
        tokens += [f"<|{role}|>" for role in ("system", "user", "assistant", "observation")]
    special = tuple(dict.fromkeys((*family.special_tokens, *tokens)))
    return dataclasses.replace(family, name=f"{family.name}+template", special_tokens=special, added_tokens=(),
                               template=template, stop=(family.eos,))


def with_stops(family: TinyFamily, stops: list[str], layout_name: str) -> TinyFamily:
    """``family`` whose replies end with ``stops``, named after the layout the caller derived from the template."""
    base = family.name.split("+")[0]
    return dataclasses.replace(family, name=f"{base}+{layout_name}", stop=tuple(dict.fromkeys(stops)))
