"""Retention: does the tuned model still answer general questions the way (and as well as) its base did?"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

from glmtune.data.formats.containers import jsonl_lines
from glmtune.errors import DataError
from glmtune.eval.text_metrics import text_metrics

BUNDLED_GENERAL = "general_probes.jsonl"
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
# Where an arithmetic reply states its result: after the last "=", "等于", "equals", "is" or "是".
_TAIL_MARKER = re.compile(r"=|等于|\bequals\b|\bis\b|是", re.IGNORECASE)


def load_general(path: str | Path | None = None) -> list[dict[str, Any]]:
    """Load general prompts (messages; optional reference, key, kind) from a JSONL file or the bundled set.

    A conversation that ends with an assistant turn and has no ``reference`` uses that turn as reference.
    Every returned row has ``messages`` (ending with a user turn), ``reference``, ``key`` and ``kind``.
    """
    if path is None:
        source = f"glmtune/resources/{BUNDLED_GENERAL}"
        try:
            text = (resources.files("glmtune") / "resources" / BUNDLED_GENERAL).read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise DataError(f"bundled general prompt file missing: {source}") from exc
        lines = [(f"{source}:{n}", line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    else:
        source = str(path)
        if not Path(path).is_file():
            raise DataError(f"general prompt file not found: {path}")
        lines = []
        for where, line, _, bad in jsonl_lines(Path(path)):
            if line is None:
                raise DataError(f"{where}: {bad}")
            lines.append((where, line))
    rows = [_parse_row(line, where) for where, line in lines]
    if not rows:
        raise DataError(f"{source}: no prompts (the file is empty)")
    return rows


def _parse_row(line: str, where: str) -> dict[str, Any]:
    """Parse one general-prompt line, or raise DataError naming ``where``."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg})") from exc
    if not isinstance(record, dict) or not isinstance(record.get("messages"), list) or not record["messages"]:
        raise DataError(f'{where}: expected an object with a non-empty "messages" list')
    messages = record["messages"]
    for i, message in enumerate(messages):
        if (
            not isinstance(message, dict)
            or not isinstance(message.get("role"), str)
            or not isinstance(message.get("content"), str)
        ):
            raise DataError(f'{where}: message {i} needs string "role" and "content"')
    reference = record.get("reference")
    if messages[-1]["role"] == "assistant":
        reference = messages[-1]["content"] if reference is None else reference
        messages = messages[:-1]
    if not messages or messages[-1]["role"] != "user":
        raise DataError(f"{where}: the prompt must end with a user turn")
    for field in ("reference", "key", "kind"):
        value = reference if field == "reference" else record.get(field)
        if value is not None and not isinstance(value, str):
            raise DataError(f'{where}: "{field}" must be a string')
    key = record.get("key")
    return {
        "messages": messages,
        "reference": reference,
        "key": key if key and key.strip() else None,
        "kind": record.get("kind"),
    }


def key_correct(answer: str, key: str, kind: str | None = None) -> bool:
    """True when ``answer`` contains ``key``: numbers must stand alone, Latin text matches case-insensitively.

    For ``kind == "arithmetic"`` only the text after the last ``=``/``等于``/``equals``/``is``/``是`` counts
    (when there is one), so echoing the question's operands is not a correct answer.
    """
    key, text = key.strip(), answer.strip()
    if not key:
        return False
    if _NUMBER.fullmatch(key):
        if kind == "arithmetic":
            marks = list(_TAIL_MARKER.finditer(text))
            text = text[marks[-1].end() :] if marks else text
        return re.search(rf"(?<![\d.-]){re.escape(key)}(?![\d]|\.\d)", text) is not None
    if key.isascii():
        return key.casefold() in text.casefold()
    return key in text


def retention_scores(rows: list[dict[str, Any]], base: list[str], tuned: list[str]) -> dict[str, Any]:
    """Tuned-vs-base agreement (ROUGE-L, identical share) and key accuracy of both, with the regressions."""
    if not len(rows) == len(base) == len(tuned):
        raise ValueError(f"{len(rows)} prompts, {len(base)} base and {len(tuned)} tuned answers")
    n = len(rows)
    result: dict[str, Any] = {
        "n": n,
        "rouge-l_tuned_vs_base": text_metrics(tuned, base)["rouge-l"] if n else 0.0,
        "identical": sum(b.strip() == t.strip() for b, t in zip(base, tuned)) / n if n else 0.0,
    }
    with_ref = [i for i, row in enumerate(rows) if row.get("reference")]
    if with_ref:
        refs = [rows[i]["reference"] for i in with_ref]
        result["rouge-l_base_vs_reference"] = text_metrics([base[i] for i in with_ref], refs)["rouge-l"]
        result["rouge-l_tuned_vs_reference"] = text_metrics([tuned[i] for i in with_ref], refs)["rouge-l"]
    checkable = [i for i, row in enumerate(rows) if row.get("key")]
    result["n_checkable"] = len(checkable)
    if checkable:
        ok_base = {i: key_correct(base[i], rows[i]["key"], rows[i].get("kind")) for i in checkable}
        ok_tuned = {i: key_correct(tuned[i], rows[i]["key"], rows[i].get("kind")) for i in checkable}
        result["accuracy_base"] = sum(ok_base.values()) / len(checkable)
        result["accuracy_tuned"] = sum(ok_tuned.values()) / len(checkable)
        result["accuracy_change"] = result["accuracy_tuned"] - result["accuracy_base"]
        result["regressions"] = [
            {
                "index": i,
                "question": rows[i]["messages"][-1]["content"],
                "key": rows[i]["key"],
                "base": base[i],
                "tuned": tuned[i],
            }
            for i in checkable
            if ok_base[i] and not ok_tuned[i]
        ]
        result["improvements"] = sum(ok_tuned[i] and not ok_base[i] for i in checkable)
    return result


def base_and_tuned_answers(
    model: Any,
    tokenizer: Any,
    layout: Any,
    prompts: list[list[dict[str, Any]]],
    max_new_tokens: int,
    batch_size: int,
) -> tuple[list[Any], list[Any]]:
    """Generate with the adapter disabled (base) and enabled (tuned); ``model`` must be a PEFT model."""
    from glmtune.infer.generate import generate_replies

    if not hasattr(model, "disable_adapter"):
        raise TypeError("retention needs a PEFT model (a base model with an adapter loaded)")
    tuned = generate_replies(
        model, tokenizer, layout, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    with model.disable_adapter():
        base = generate_replies(
            model, tokenizer, layout, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size
        )
    return base, tuned
