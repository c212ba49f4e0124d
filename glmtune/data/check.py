"""``glmtune data check``: validate a data file, repair what can be repaired, quarantine the rest, report.

Every input record ends up either in the fixed output or in the quarantine: ``input = kept + quarantined``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from glmtune.data import repair as rp
from glmtune.data.conversation import Conversation, Problem, check_messages, normalise_message
from glmtune.data.encoding import flag_mojibake
from glmtune.data.formats import CONVERTERS, FORMATS, RecordError
from glmtune.data.formats.containers import Item, read_items
from glmtune.data.outputs import atomic_write, check_output
from glmtune.data.placeholders import PLACEHOLDER, find_placeholders
from glmtune.data.read import detect_file_format, detection_problem
from glmtune.data.read_result import write_rejects
from glmtune.data.stats import (
    char_lengths,
    conversation_stats,
    format_stats,
    reasoning_warning,
)
from glmtune.errors import DataError, UserError

log = logging.getLogger(__name__)
Message = dict[str, Any]
# Problem codes the repairs take care of, and codes that are only warnings; every other code is an error
# and sends its record to the quarantine.
FIXABLE = frozenset({"empty_content", "repeated_role", "stringified_tools", "unwrapped_tools"})
WARNINGS = frozenset({"conflicting_answer", "too_long", "combine_only"})
STRUCTURAL = frozenset({"no_messages", "bad_message", "unknown_role", "bad_content", "bad_tools",
                        "bad_metadata", "bad_tool_arguments", "bad_reasoning", "reasoning_twice"})
# Record keys of the input formats; the fixed GLM-4 output keeps only the other (user) keys.
FORMAT_KEYS = frozenset({"messages", "conversations", "system", "tools", "functions", "instruction", "input",
                         "output", "history"})


class Measured(Protocol):
    """Token counts of one conversation and the problems its chat template shows."""

    prompt: int
    reply: int
    total: int | None
    problems: list[tuple[str, str]]


class Measure(Protocol):
    """Measures conversations in a model's tokens (``glmtune.layout.measure.TokenMeasure``)."""

    max_length: int | None
    thinks: bool

    def __call__(self, messages: list[dict[str, Any]]) -> Measured:
        """Token counts and template problems of ``messages``."""
        ...

    def count(self, text: str) -> int:
        """Tokens of a plain text."""
        ...


def problem_kind(code: str) -> str:
    """Kind of a problem code: error (record quarantined), fixable (the repairs fix it) or warning (kept)."""
    return "fixable" if code in FIXABLE else "warning" if code in WARNINGS else "error"


@dataclass
class CheckResult:
    """Everything ``check_file`` found and did; ``exit_code``: 0 clean, 1 handled problems, 2 nothing usable."""

    path: str
    format: str | None
    total: int = 0
    kept: list[Conversation] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    repairs: list[rp.Repair] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    written: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # file-level warnings (reasoning the template drops)

    @property
    def clean(self) -> bool:
        """True when nothing had to be quarantined or repaired (warnings alone leave a file clean)."""
        return not self.quarantined and not any(problem_kind(p.code) != "warning" for p in self.problems)

    @property
    def exit_code(self) -> int:
        """0 clean (warnings allowed), 1 problems found and handled, 2 nothing usable: the user must act."""
        if not self.kept:
            return 2
        return 0 if self.clean else 1

    def counts(self) -> dict[str, Any]:
        """Input/kept/quarantined totals and problem and repair counts per code."""
        kinds = Counter(problem_kind(p.code) for p in self.problems)
        return {"input": self.total, "kept": len(self.kept), "quarantined": len(self.quarantined),
                "problems": len(self.problems), "errors": kinds["error"], "fixable": kinds["fixable"],
                "warnings": kinds["warning"], "repairs": len(self.repairs),
                "problems_by_code": dict(Counter(p.code for p in self.problems).most_common()),
                "repairs_by_code": dict(Counter(r.code for r in self.repairs).most_common())}

    def as_dict(self) -> dict[str, Any]:
        """The full report (what ``--report`` writes)."""
        problems = [{"source": p.source, "code": p.code, "kind": problem_kind(p.code), "reason": p.reason}
                    for p in self.problems]
        quarantined = [{k: row[k] for k in ("source", "code", "reason")} for row in self.quarantined]
        return {"file": self.path, "format": self.format, "exit_code": self.exit_code,
                "counts": self.counts(), "problems": problems, "repairs": [r.as_dict() for r in self.repairs],
                "quarantined": quarantined, "stats": self.stats, "notes": self.notes, "written": self.written}


@dataclass
class _Record:
    item: Item
    original: list[Message] | None = None  # normalised, placeholders filled, before repairs
    messages: list[Message] | None = None  # after repairs
    extra: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    repairs: list[rp.Repair] = field(default_factory=list)
    fatal: tuple[str, str] | None = None  # (code, reason) that sends the record to the quarantine

    def add(self, code: str, reason: str) -> None:
        self.problems.append(Problem(self.item.source, code, reason))
        if self.fatal is None and problem_kind(code) == "error":
            self.fatal = (code, reason)


def parse_set_values(pairs: list[str] | None) -> dict[str, str]:
    """Parse ``--set name=Nova`` pairs into placeholder values (``UserError`` on a malformed pair)."""
    values: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not PLACEHOLDER.fullmatch("{{" + key + "}}"):
            raise UserError(f"--set expects name=value with a placeholder name, got {pair!r}")
        values[key] = value
    return values


def check_file(
    path: str | Path,
    format: str | None = None,
    fix: str | None = None,
    quarantine: str | None = None,
    report: str | None = None,
    measure: Measure | None = None,
    values: dict[str, str] | None = None,
) -> CheckResult:
    """Validate ``path``, repair (``fix``), quarantine and report; see ``CheckResult.exit_code``. With a
    ``measure`` (``glmtune.layout.measure.TokenMeasure``) lengths are in the model's tokens and the problems
    only its chat template can see are found too."""
    values = _check_usage(path, format, fix, quarantine, report, values)
    items = read_items(path)
    if not items:
        raise DataError(f"{path}: no records (the file is empty or holds only blank lines)")
    flag_mojibake(items)
    file_format, sampled = (format, 0) if format else detect_file_format(items)
    records = [_check_record(item, file_format, format is None, sampled, values) for item in items]
    survivors = [r for r in records if r.fatal is None]
    _dedupe(survivors)
    survivors = [r for r in survivors if r.fatal is None]
    lengths, totals = _lengths(survivors, measure)
    survivors = [r for r in survivors if r.fatal is None]
    _conflicts(survivors)

    result = CheckResult(path=str(path), format=file_format, total=len(items))
    for rec in records:
        result.problems.extend(rec.problems)
        if rec.fatal is None:
            assert rec.messages is not None
            result.kept.append(Conversation(messages=rec.messages, source=rec.item.source, extra=rec.extra))
            result.repairs.extend(rec.repairs)
        else:
            result.repairs.extend(r for r in rec.repairs if r.code == "removed_duplicate")
            result.quarantined.append(_quarantine_row(rec))
    kept_lengths = [lengths.get(id(r), (0, 0)) for r in survivors]
    kept_totals = [totals[id(r)] for r in survivors] if measure else None
    unit = "tokens" if measure else "characters"
    result.stats = conversation_stats([c.messages for c in result.kept], kept_lengths, unit,
                                      measure.max_length if measure else None, kept_totals,
                                      [c.extra for c in result.kept], measure.count if measure else len)
    note = reasoning_warning(str(path), result.stats, measure)
    result.notes.extend([note] if note else [])
    assert result.total == len(result.kept) + len(result.quarantined), "check_file lost records"
    _write_outputs(result, fix, quarantine, report)
    return result


def _check_usage(path: str | Path, format: str | None, fix: str | None, quarantine: str | None,
                 report: str | None, values: dict[str, str] | None) -> dict[str, str]:
    if format is not None and format not in CONVERTERS:
        raise DataError(f"unknown data format {format!r}; expected one of {', '.join(FORMATS)}")
    outputs = [Path(p).resolve() for p in (fix, quarantine, report) if p]
    if Path(path).resolve() in outputs:
        raise UserError(f"an output path is the input file {path}; write the results elsewhere")
    if len(set(outputs)) != len(outputs):
        raise UserError("--fix, --quarantine and --report must be different files")
    for flag, out in (("--fix", fix), ("--quarantine", quarantine), ("--report", report)):
        if out:
            check_output(out, flag)
    values = {str(k): str(v) for k, v in (values or {}).items()}
    for key in values:
        if not PLACEHOLDER.fullmatch("{{" + key + "}}"):
            raise UserError(f"placeholder name {key!r} is not a valid name (letters, digits, _)")
    return values


def _check_record(item: Item, file_format: str | None, detect: bool, sampled: int,
                  values: dict[str, str]) -> _Record:
    rec = _Record(item)
    if item.error is not None:
        rec.add(*item.error)
        return rec
    if detect:
        found = detection_problem(item.record, file_format, sampled)
        if found:
            rec.add(*found)
            return rec
    try:
        messages, rec.extra = CONVERTERS[file_format](item.record)  # type: ignore[index]
        if isinstance(messages, list):
            messages, tool_problems, parsed = rp.parse_message_tools(messages)
            for code, reason in tool_problems:
                rec.add(code, reason)
            if parsed:
                rec.repairs.append(rp.Repair(item.source, "parsed_tools", ", ".join(parsed)))
    except RecordError as exc:
        rec.add(exc.code, exc.reason)
        return rec
    structural = [f for f in check_messages(messages, need_reply=False) if f[0] in STRUCTURAL]
    if structural:
        for code, reason in structural:
            rec.add(code, reason)
        return rec
    messages = [normalise_message(m) for m in messages]
    messages, filled = rp.fill(messages, values)
    if filled:
        rec.repairs.append(rp.Repair(item.source, "filled_placeholder", ", ".join(filled)))
    left = sorted(find_placeholders(messages))
    if left:
        names = ", ".join("{{" + n + "}}" for n in left)
        hint = " ".join(f"--set {n}=..." for n in left)
        rec.add("unfilled_placeholder", f"{names} left unfilled; pass {hint}")
    rec.original = messages
    for code, reason in rp.validate_messages(messages):
        rec.add(code, reason)
    rec.messages, repairs = rp.repair_messages(item.source, messages)
    rec.repairs.extend(repairs)
    seen = {p.code for p in rec.problems}
    for code, reason in rp.validate_messages(rec.messages):  # safety net: repairs must not create errors
        if code not in seen:
            rec.add(code, reason + " (after repairs)")
    return rec


def _dedupe(records: list[_Record]) -> None:
    exact: dict[str, str] = {}
    near: dict[tuple[str, str], str] = {}
    for rec in records:
        assert rec.original is not None and rec.messages is not None
        ek, nk = rp.exact_key(rec.original), rp.prompt_reply_keys(rec.messages)
        first, code, how = exact.get(ek), "duplicate", "the same conversation"
        if first is None:
            first, code = near.get(nk), "near_duplicate"
            how = "the same prompt and reply once case, whitespace and punctuation are ignored"
        if first is None:
            exact.setdefault(ek, rec.item.source)
            near.setdefault(nk, rec.item.source)
            continue
        rec.problems.append(Problem(rec.item.source, code, f"duplicate_of {first}: {how}"))
        rec.fatal = (code, f"duplicate_of {first}")
        rec.repairs.append(rp.Repair(rec.item.source, "removed_duplicate", f"duplicate_of {first}"))


def _conflicts(records: list[_Record]) -> None:
    answers: dict[str, tuple[str, str]] = {}
    for rec in records:
        assert rec.messages is not None
        prompt, reply = rp.prompt_reply_keys(rec.messages)
        if prompt == "[]":
            continue
        first = answers.setdefault(prompt, (rec.item.source, reply))
        if first[1] != reply:
            rec.add("conflicting_answer", f"same prompt as {first[0]} but a different reply")


def _lengths(records: list[_Record], measure: Measure | None
             ) -> tuple[dict[int, tuple[int, int]], dict[int, int]]:
    """(prompt, reply) lengths per record (tokens with a ``measure``, else characters) and token totals."""
    lengths: dict[int, tuple[int, int]] = {}
    totals: dict[int, int] = {}
    for rec in records:
        if measure is None:
            lengths[id(rec)] = char_lengths(rec.messages or [])
            continue
        found = measure(rec.messages or [])
        for code, reason in found.problems:
            rec.add(code, reason)
        if found.total is not None:
            lengths[id(rec)], totals[id(rec)] = (found.prompt, found.reply), found.total
    return lengths, totals


def _quarantine_row(rec: _Record) -> dict[str, Any]:
    assert rec.fatal is not None
    code, reason = rec.fatal
    errors = sum(1 for p in rec.problems if problem_kind(p.code) == "error")
    if errors > 1:
        reason += f" (+{errors - 1} more)"
    row: dict[str, Any] = {"source": rec.item.source, "code": code, "reason": reason}
    if rec.item.error is None:
        row["record"] = rec.item.record
    else:
        row["raw"] = rec.item.raw
    return row


def _write_outputs(result: CheckResult, fix: str | None, quarantine: str | None, report: str | None) -> None:
    if fix:
        out = Path(fix)
        with atomic_write(out) as fh:
            for conv in result.kept:
                extra = {k: v for k, v in conv.extra.items() if k not in FORMAT_KEYS}
                row = {"messages": conv.messages, **extra}
                fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        result.written["fix"] = str(out)
        log.info(f"wrote {len(result.kept)} conversations (GLM-4 messages JSONL) to {out}")
    if quarantine:
        rows = [json.loads(json.dumps(row, ensure_ascii=False, default=str)) for row in result.quarantined]
        write_rejects(rows, quarantine)
        result.written["quarantine"] = str(quarantine)
        log.info(f"wrote {len(rows)} quarantined records to {quarantine}")
    if report:
        out = Path(report)
        result.written["report"] = str(out)
        text = json.dumps(result.as_dict(), ensure_ascii=False, indent=2, default=str)
        with atomic_write(out) as fh:
            fh.write(text + "\n")
        log.info(f"wrote the report to {out}")


def print_summary(result: CheckResult, console: Any = None, limit: int = 40) -> None:
    """Print a readable summary with rich; problem lines are printed without markup."""
    from rich.console import Console

    console = console or Console(highlight=False)
    counts = result.counts()
    fmt = result.format or "unknown"
    console.print(f"[bold]glmtune data check[/bold] {result.path} (format: {fmt})", soft_wrap=True)
    verdict = ("[green]clean[/green]" if result.clean else f"[red]{counts['problems']} problem(s)[/red]")
    if result.clean and counts["warnings"]:
        verdict = f"[green]clean[/green] ({counts['warnings']} warning(s) only)"
    console.print(f"{verdict}: {counts['errors']} errors (quarantined), {counts['fixable']} fixable, "
                  f"{counts['warnings']} warnings; {counts['repairs']} repairs")
    console.print(f"input {counts['input']} = kept {counts['kept']} + quarantined {counts['quarantined']}",
                  markup=False)
    if result.exit_code == 2:
        console.print("[red]nothing usable[/red]: every record was quarantined; fix the data (see the reasons "
                      "below) and check it again")
    for title, key in (("problems", "problems_by_code"), ("repairs", "repairs_by_code")):
        if counts[key]:
            line = ", ".join(f"{code} {n}" for code, n in counts[key].items())
            console.print(f"{title} by code: {line}", markup=False, soft_wrap=True)
    for problem in result.problems[:limit]:
        console.print(f"  {problem} ({problem_kind(problem.code)})", markup=False, soft_wrap=True)
    if len(result.problems) > limit:
        console.print(f"  ... {len(result.problems) - limit} more (see --report)", markup=False)
    for note in result.notes:
        console.print(note, markup=False, soft_wrap=True)
    for line in format_stats(result.stats):
        console.print(line, markup=False, soft_wrap=True)
