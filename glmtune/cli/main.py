"""``glmtune`` entry point: parse arguments, dispatch, and turn user errors into clear messages."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from glmtune import __version__
from glmtune.argtypes import int_at_least, number_between
from glmtune.errors import UserError
from glmtune.log import setup_logging
from glmtune.serve.cli import add_serve_arguments
from glmtune.tiny.families import FAMILY_NAMES


def str2bool(text: str) -> bool:
    """Parse true/false style flags."""
    low = text.lower()
    if low in ("true", "1", "yes", "y"):
        return True
    if low in ("false", "0", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def num_proc(value: str) -> int | str:
    """``--num-proc``: ``auto`` or a positive integer."""
    if value == "auto":
        return value
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a positive integer, got {value!r}")
    return int(value)


positive_int = int_at_least(1)
non_negative = number_between(0, float("inf"))


def build_parser() -> argparse.ArgumentParser:
    """All subcommands and their flags."""
    parser = argparse.ArgumentParser(prog="glmtune", description="Fine-tune GLM-4-family chat models.")
    parser.add_argument("--version", action="version", version=f"glmtune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_training_commands(sub)
    p = sub.add_parser("serve", help="OpenAI-compatible chat completions server")
    add_serve_arguments(p)  # glmtune/serve/cli.py: port, batching, queue bound, model names
    _add_data_commands(sub)
    _add_model_commands(sub)
    _add_inference_commands(sub)
    _add_export_commands(sub)
    _add_ui_command(sub)
    return parser


def _add_training_commands(sub: Any) -> None:
    """``train`` and ``plan``."""
    p = sub.add_parser("train", help="fine-tune a model from a YAML config")
    p.add_argument("config", help="YAML config file")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. training.learning_rate=3e-4")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output_dir")
    p.add_argument("--resume", nargs="?", const="auto", metavar="auto|PATH",
                   help="continue from the latest complete checkpoint (auto) or from PATH")
    p.add_argument("--force", action="store_true", help="resume even though the config or data changed")

    p = sub.add_parser("plan", help="print the resolved hyperparameters and why, without training")
    p.add_argument("config", help="YAML config file")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.train_file=big.jsonl")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def _add_data_commands(sub: Any) -> None:
    """``data check``, ``data tokenize`` and ``data cache``."""
    p = sub.add_parser("data", help="data tools")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    c = dsub.add_parser("check", help="validate, repair and quarantine a data file; nothing is lost")
    c.add_argument("file", help="data file (.jsonl/.json/.csv/.parquet)")
    c.add_argument("--format", help="glm4, openai, alpaca or sharegpt (default: auto-detect)")
    c.add_argument("--fix", metavar="OUT.jsonl", help="write repaired GLM-4 conversations here")
    c.add_argument("--quarantine", metavar="REJECTS.jsonl", help="write rejected records with reasons here")
    c.add_argument("--report", metavar="REPORT.json", help="write problems, repairs and statistics here")
    c.add_argument("--model", help="tokenizer folder, for token lengths and --max-length checks")
    c.add_argument("--max-length", type=int, help="flag samples longer than this many tokens (needs --model)")
    c.add_argument("--truncation", choices=["keep_recent", "official"], default="keep_recent",
                   help="how training fits over-long samples, for --max-length reasons (default keep_recent)")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="fill {{KEY}} placeholders, e.g. --set name=Nova --set author='Acme Lab'")
    t = dsub.add_parser("tokenize", help="apply the training layout and write input_ids/labels JSONL")
    t.add_argument("--model", required=True, help="model or tokenizer folder")
    t.add_argument("--data", required=True, help="a data file in any supported format (.jsonl/.json/.csv/.parquet)")
    t.add_argument("--format", choices=["auto", "glm4", "openai", "alpaca", "sharegpt"], default="auto",
                   help="record format (default: detected)")
    t.add_argument("--out", required=True, help="output JSONL")
    t.add_argument("--combine", type=str2bool, default=True, help="train only the last reply (default true)")
    t.add_argument("--max-length", type=int, default=1025, help="longest sample in tokens (default 1025)")
    t.add_argument("--truncation", choices=["keep_recent", "official"], default="keep_recent",
                   help="how over-long samples are fitted (default keep_recent)")
    t.add_argument("--show", type=int, default=0, metavar="N", help="print N samples with trained spans highlighted")
    t.add_argument("--num-proc", default="auto", type=num_proc,
                   help="tokenizing processes (default auto: one per 20k conversations, up to the CPU count)")
    t.add_argument("--cache-dir", help="tokenized-data cache (default ~/.cache/glmtune/datasets)")
    t.add_argument("--no-cache", action="store_true", help="tokenize into a throw-away folder")

    k = dsub.add_parser("cache", help="list the tokenized-data cache; --max-gb prunes it, --clear empties it")
    k.add_argument("--cache-dir", help="cache folder (default $GLMTUNE_CACHE, else ~/.cache/glmtune/datasets)")
    k.add_argument("--max-gb", type=non_negative, metavar="N", help="delete least recently used entries beyond N GiB")
    k.add_argument("--clear", action="store_true", help="delete every entry")


def _add_model_commands(sub: Any) -> None:
    """``make-tiny``."""
    p = sub.add_parser("make-tiny", help="write a tiny random GLM-4 model and tokenizer (offline)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--family", choices=FAMILY_NAMES, default=None,
                   help="architecture, special tokens and chat template to imitate (default glm4); with "
                        "--chat-template, the architecture only (default: glm4 for a template that writes [gMASK])")
    p.add_argument("--chat-template", metavar="FILE", default=None,
                   help="build the tiny model around this chat template (a .jinja file): its special tokens are "
                        "read from the template and its stop tokens derived from how it ends a reply")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder (old weights deleted)")



def _add_inference_commands(sub: Any) -> None:
    """``predict``, ``chat`` and ``eval``."""
    for name, helptext in (("predict", "generate replies for a data file"), ("chat", "interactive chat")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--model", required=True, help="base model folder or hub id")
        p.add_argument("--adapter", help="adapter folder written by glmtune train")
        p.add_argument("--max-new-tokens", type=positive_int, default=256)
        if name == "predict":
            p.add_argument("--repetition-penalty", type=float, default=None,
                           help="penalise repeated tokens (the official default is 1.2 when sampling)")
            p.add_argument("--data", required=True, help="GLM-4 messages JSONL")
            p.add_argument("--out", required=True, help="output predictions JSONL")
            p.add_argument("--batch-size", type=positive_int, default=16)

    p = sub.add_parser("eval", help="score predictions, or generate and score: ROUGE/BLEU, identity, loops, retention")
    p.add_argument("--model", help="base model folder (generate predictions)")
    p.add_argument("--adapter", help="adapter folder (also enables the retention check against the base)")
    p.add_argument("--data", help="conversations to answer (any supported format)")
    p.add_argument("--predictions", help="score an existing predictions JSONL instead of generating")
    p.add_argument("--out", help="metrics.json path, or a folder for metrics.json")
    p.add_argument("--name", help="the expected assistant name (identity adoption / leakage)")
    p.add_argument("--author", help="the expected author")
    p.add_argument("--probes", help="identity probe JSONL (default: bundled bilingual set)")
    p.add_argument("--general", help="general prompts with references for retention (default: bundled set)")
    p.add_argument("--max-new-tokens", type=positive_int, default=256)
    p.add_argument("--batch-size", type=positive_int, default=16)


def _add_export_commands(sub: Any) -> None:
    """``export`` and ``demo``."""
    p = sub.add_parser("export", help="merge an adapter into its base and write a Hugging Face model folder")
    p.add_argument("--model", required=True, help="base model folder or hub id")
    p.add_argument("--adapter", required=True, help="adapter folder written by glmtune train")
    p.add_argument("--out", required=True, help="output folder (must be new or empty unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder (old weights deleted)")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    p.add_argument("--max-shard-size", default="2GB", help="safetensors shard size (default 2GB)")

    p = sub.add_parser("demo", help="build a tiny base model and fine-tune a new identity into it, offline")
    p.add_argument("--out", default="glmtune-demo", help="work folder (default ./glmtune-demo)")
    p.add_argument("--name", default="Nova", help="the new assistant name")
    p.add_argument("--author", default="Acme Lab", help="the new assistant's author")
    p.add_argument("--rebuild", action="store_true", help="rebuild the cached base model")


def user_pass(value: str) -> tuple[str, str]:
    """``--auth USER:PASS``: both parts non-empty."""
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise argparse.ArgumentTypeError(f"expected USER:PASS, got {value!r}")
    return user, password


def _add_ui_command(sub: Any) -> None:
    """``ui``: the web UI."""
    p = sub.add_parser("ui", help="web UI for the whole fine-tune: model, data, plan, train, eval, chat, export")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; use an SSH tunnel to reach it)")
    p.add_argument("--port", type=positive_int, default=7860, help="port (default 7860)")
    p.add_argument("--auth", type=user_pass, metavar="USER:PASS", help="ask for this user name and password")
    p.add_argument("--workdir", default="glmtune-ui",
                   help="folder for models, uploads, plans, runs and exports (default ./glmtune-ui)")

def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user mistakes print ``error: ...`` and exit 2, never a traceback."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    args = build_parser().parse_args(argv)
    # glmtune's messages print as plain lines, rank 0 only: on stdout, except beside uvicorn's for serve and away
    # from the JSON for plan --json
    setup_logging(stderr=args.command == "serve" or bool(getattr(args, "json", False)))
    from glmtune.cli import commands

    handler = commands.HANDLERS[args.command]
    try:
        return handler(args) or 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a location that cannot be written, found only while writing (disk full, read-only)
        from glmtune.data.outputs import write_error

        message = write_error(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
