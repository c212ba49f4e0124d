"""One handler per subcommand; each loads what it needs lazily so ``glmtune --help`` stays fast."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from glmtune.data.outputs import atomic_write, check_output, clear_model_files
from glmtune.errors import UserError

log = logging.getLogger(__name__)


def cmd_train(args: argparse.Namespace) -> int:
    """``glmtune train CONFIG [overrides]``."""
    from glmtune.config import load_config
    from glmtune.train.preflight import preflight

    config = load_config(args.config, args.overrides)
    check_output(config.training.output_dir, "training.output_dir", "dir")
    preflight(config)  # config mistakes are reported before torch, transformers and peft are imported
    from glmtune.train.recipe import train

    train(config, overwrite=args.overwrite, resume=args.resume, force=args.force)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """``glmtune plan CONFIG [overrides] [--json]``; with ``--json`` only the JSON is on stdout."""
    from glmtune.config import load_config

    config = load_config(args.config, args.overrides)
    from glmtune.train.plan_view import print_plan
    from glmtune.train.recipe import prepare_run

    prepared = prepare_run(config, None)
    if args.json:
        print(json.dumps(prepared.plan.as_dict(), indent=2, default=str))
    else:
        print_plan(prepared.plan)
    log.info("train confirms three values once the model is loaded: an untrained base (one that finishes none of "
             "its self-replay replies) turns training.base_anchor, and with it identity.unlikelihood, off; a model "
             "that cannot give its loss from hidden states turns training.chunked_loss off. plan.json records what "
             "ran.")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """``glmtune serve ...``."""
    from glmtune.serve.cli import serve_from_args

    return serve_from_args(args)


def cmd_data(args: argparse.Namespace) -> int:
    """``glmtune data check|tokenize|cache ...``."""
    if args.data_command == "check":
        return cmd_data_check(args)
    if args.data_command == "cache":
        return cmd_data_cache(args)
    return cmd_data_tokenize(args)


def cmd_data_cache(args: argparse.Namespace) -> int:
    """``glmtune data cache``: list entries (least recently used first), prune or clear them."""
    import time

    from glmtune.data.cache import cache_root, list_cache, prune_cache

    root = cache_root(args.cache_dir)
    if args.clear or args.max_gb is not None:
        freed = prune_cache(root, 0 if args.clear else int(args.max_gb * 2**30))
        print(f"deleted {len(freed)} entries ({sum(e.size for e in freed) / 2**20:,.1f} MiB) from {root}")
    entries = list_cache(root)
    for e in entries:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used))
        print(f"{e.path.name}  {e.size / 2**20:>9,.1f} MiB  last used {used}  {e.source}")
    print(f"{len(entries)} entries, {sum(e.size for e in entries) / 2**20:,.1f} MiB in {root}")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    """``glmtune data check FILE ...``: 0 clean, 1 problems found and handled, 2 the user must act."""
    from glmtune.data.check import check_file, parse_set_values, print_summary
    from glmtune.layout.measure import TokenMeasure

    if args.max_length is not None and (args.model is None or args.max_length <= 0):
        raise UserError("--max-length needs --model (lengths are counted with its tokenizer) and must be > 0")
    measure = TokenMeasure.from_model(args.model, args.max_length, args.truncation) if args.model else None
    result = check_file(args.file, format=args.format, fix=args.fix, quarantine=args.quarantine,
                        report=args.report, measure=measure, values=parse_set_values(args.set))
    print_summary(result)
    return result.exit_code


def cmd_data_tokenize(args: argparse.Namespace) -> int:
    """``glmtune data tokenize ...``: the training path (Arrow, cached, multi-process) written out as JSONL."""
    from rich.console import Console

    from glmtune.config.schema import DataSource
    from glmtune.data.cache import cache_root, tokenizer_fingerprint
    from glmtune.layout import get_layout
    from glmtune.layout.show import describe_layout, highlight, plain_markup
    from glmtune.layout.verify import verify_layout
    from glmtune.models import load_tokenizer
    from glmtune.serve.tool_syntax import describe_syntax
    from glmtune.train.tokenize import iter_conversations, tokenise_file

    check_output(args.out, "--out")
    root = None if args.no_cache else check_output(cache_root(args.cache_dir), "--cache-dir", "dir")
    tokenizer = load_tokenizer(args.model)
    layout = get_layout(tokenizer)
    tok = tokenise_file(DataSource(path=args.data, format=args.format), layout, tokenizer_fingerprint(tokenizer),
                        args.combine, args.max_length, args.truncation, {}, root, args.num_proc)
    out = Path(args.out)
    total = 0
    with atomic_write(out) as fh:  # a kill leaves the old file (or none), never a valid-looking partial one
        for batch in tok.samples.iter(batch_size=1000):
            total += sum(batch["length"])
            for ids, labels in zip(batch["input_ids"], batch["labels"]):
                fh.write(json.dumps({"input_ids": ids, "labels": labels}) + "\n")
    console = Console(highlight=False)
    head = [c.messages for _, c in zip(range(16), iter_conversations(tok.conversations))]
    checked = verify_layout(layout, tokenizer, head, args.combine)
    console.print(describe_layout(layout, tokenizer), markup=False, soft_wrap=True)
    console.print(describe_syntax(layout, tokenizer), markup=False, soft_wrap=True)
    console.print(f"layout verified on {checked} conversations: ids equal the chat template, every trained span "
                  "is a reply ending in a stop token", markup=False, soft_wrap=True)
    for i, row in zip(range(args.show), tok.samples):
        where = "on green" if console.is_terminal else "inside ⟦ ⟧"
        console.rule(f"sample {i + 1} ({row['source']}) - trained tokens {where}")
        if console.is_terminal:
            console.print(highlight(tokenizer, row["input_ids"], row["labels"]))
        else:  # no colours in a pipe or a log: mark trained spans with brackets
            console.print(plain_markup(tokenizer, row["input_ids"], row["labels"]), markup=False)
    with tok.rejects_file.open(encoding="utf-8") as fh:
        for line in fh:
            reject = json.loads(line)
            console.print(f"skipped {reject['source']}: [{reject['code']}] {reject['reason']}", markup=False,
                          soft_wrap=True)
    where = f"cache hit: {tok.path}" if tok.cache_hit else ("cache off" if args.no_cache else f"cached: {tok.path}")
    counts = tok.counts
    console.print(
        f"wrote {len(tok.samples)} samples to {out}: {counts.trained_tokens} trained of {total} tokens; "
        f"{counts.truncated} over {args.max_length} fitted by {args.truncation} ({counts.trained_tokens_removed} "
        f"trained tokens removed); {counts.rejected} skipped ({where})", markup=False, soft_wrap=True,
    )
    return 1 if counts.rejected else 0


def cmd_make_tiny(args: argparse.Namespace) -> int:
    """``glmtune make-tiny --out DIR``."""
    from glmtune.tiny.model import make_tiny
    from glmtune.world import tokenizer_corpus

    check_output(args.out, "--out", "dir", overwrite=args.overwrite)
    corpus = tokenizer_corpus(args.seed)
    family = args.family or "glm4"
    if args.chat_template:
        family = family_from_template(read_text_file(args.chat_template, "--chat-template"), args.family, corpus)
    if args.overwrite and Path(args.out).is_dir():
        clear_model_files(args.out)
    out = make_tiny(args.out, seed=args.seed, family=family, corpus=corpus)
    name = family if isinstance(family, str) else family.name
    print(f"wrote a tiny {name} model and tokenizer to {out}")
    if not isinstance(family, str):
        print(f"special tokens from the template: {' '.join(family.special_tokens)}")
        print(f"stop tokens derived from the template: {' '.join(family.stop)}")
    return 0


def read_text_file(path: str, flag: str) -> str:
    """A UTF-8 text file named on the command line; a clear error naming ``flag`` when it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{flag} {path}: cannot read it ({exc.__class__.__name__}: {exc})") from None


def family_from_template(template: str, base: str | None, corpus: list[str]) -> Any:
    """A tiny family around ``template``: special tokens read from it, stop tokens derived by its layout."""
    from glmtune.layout import get_layout
    from glmtune.tiny.from_template import template_family, with_stops
    from glmtune.tiny.model import family_tokenizer

    family = template_family(template, base)
    tokenizer = family_tokenizer(family, corpus, vocab_size=600)
    layout = get_layout(tokenizer)
    return with_stops(family, tokenizer.convert_ids_to_tokens(layout.stop_ids), layout.name)


def cmd_predict(args: argparse.Namespace) -> int:
    """``glmtune predict ...``."""
    from glmtune.infer.predict import predict_file

    check_output(args.out, "--out")
    predict_file(args.model, args.data, args.out, adapter=args.adapter, max_new_tokens=args.max_new_tokens,
                 batch_size=args.batch_size, repetition_penalty=args.repetition_penalty)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    """``glmtune chat ...``."""
    from glmtune.infer.chat import chat_loop

    chat_loop(args.model, adapter=args.adapter, max_new_tokens=args.max_new_tokens)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """``glmtune eval ...``."""
    from glmtune.eval.run import evaluate

    if args.out:
        check_output(args.out, "--out", "file" if args.out.endswith(".json") else "dir")
    metrics = evaluate(model=args.model, adapter=args.adapter, data=args.data, predictions=args.predictions,
                       out=args.out, identity_name=args.name, identity_author=args.author, probes=args.probes,
                       general=args.general, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    if args.out:  # inside a run folder: add the results to its report.html and model card
        from glmtune.eval.predictions import output_paths
        from glmtune.report.update import update_run

        update_run(output_paths(args.out)[0], metrics, args.model)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``glmtune export ...``."""
    from glmtune.export.merge import export_model

    export_model(args.model, args.adapter, args.out, dtype=args.dtype, max_shard_size=args.max_shard_size,
                 overwrite=args.overwrite)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``glmtune demo``."""
    from glmtune.demo.run import run_demo

    check_output(args.out, "--out", "dir")
    run_demo(args.out, name=args.name, author=args.author, rebuild=args.rebuild)
    return 0



def cmd_ui(args: argparse.Namespace) -> int:
    """``glmtune ui``: serve the web UI until Ctrl-C (runs it started keep training)."""
    from glmtune.ui import launch

    launch(host=args.host, port=args.port, auth=args.auth, workdir=args.workdir)
    return 0

HANDLERS = {
    "train": cmd_train,
    "plan": cmd_plan,
    "serve": cmd_serve,
    "data": cmd_data,
    "make-tiny": cmd_make_tiny,
    "predict": cmd_predict,
    "chat": cmd_chat,
    "eval": cmd_eval,
    "export": cmd_export,
    "demo": cmd_demo,
    "ui": cmd_ui,
}
