"""Fast-eval benchmark: glmtune's batched generation vs the official one-sample-at-a-time evaluation.

The official GLM-4 fine-tuning code (zai-org/GLM-4 ``finetune.py``) evaluates through a ``Seq2SeqTrainer``
subclass with ``predict_with_generate=True``: its ``prediction_step`` pops ``output_ids``, lets
``Seq2SeqTrainer.prediction_step`` call ``model.generate`` and cuts the prompt off the generated ids. We
run exactly that, with ``per_device_eval_batch_size=1`` (so no sample is padded), greedy decoding, KV cache
and the layout's stop ids, against :func:`glmtune.infer.generate.generate_replies` (length-sorted batches,
left padding). Both get the same prompt ids and the same post-processing (cut at the first stop id,
decode without special tokens, strip), so any difference in the texts comes from the batching alone.

The official path has no repetition guard, so like is compared with like twice: glmtune with the guard off
against the official texts, and glmtune with its default guard against the official replies cut by the
same rule (:func:`guard_cut`), texts and loop verdicts both. The exit code is 1 when either differs.

    python -m bench.eval_speed [--model DIR] [--n 200] [--max-new-tokens 64] [--batch-size 16] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_zh_demo.json"


def load_prompts(path: Path, n: int) -> tuple[list[list[dict[str, Any]]], list[str]]:
    """The first ``n`` conversations of ``path`` (any format ``read_any`` knows) as prompts and references."""
    from glmtune.data.read import read_any

    read = read_any(path)
    pairs = [conv.prompt_and_reference() for conv in read.conversations[:n]]
    return [p for p, _ in pairs], [r or "" for _, r in pairs]


def official_classes() -> tuple[type, type]:
    """The official collator and ``Seq2SeqTrainer`` subclass (defined on first use: transformers loads lazily)."""
    import torch
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer

    class OfficialCollator(DataCollatorForSeq2Seq):
        """The official collator: right-pad ``output_ids`` with the pad id, then pad the rest as usual."""

        def __call__(self, features: list[dict[str, Any]], return_tensors: Any = None) -> Any:
            width = max(len(f["output_ids"]) for f in features)
            for f in features:
                f["output_ids"] = list(f["output_ids"]) + [self.tokenizer.pad_token_id] * (
                    width - len(f["output_ids"])
                )
            batch = super().__call__(features, return_tensors)
            if batch.get("labels", 0) is None:  # transformers 5 adds labels=None, which would ask for a loss
                del batch["labels"]
            return batch

    class OfficialTrainer(Seq2SeqTrainer):
        """The official ``prediction_step``: generate, keep only the new ids, labels = ``output_ids``."""

        def prediction_step(
            self,
            model: Any,
            inputs: dict[str, Any],
            prediction_loss_only: bool,
            ignore_keys: Any = None,
            **gen_kwargs: Any,
        ) -> Any:
            with torch.no_grad():
                output_ids = inputs.pop("output_ids")
                input_ids = inputs["input_ids"]
                loss, generated, _ = super().prediction_step(
                    model, inputs, prediction_loss_only, ignore_keys, **gen_kwargs
                )
                return loss, generated[:, input_ids.size()[1] :], output_ids

    return OfficialCollator, OfficialTrainer


def official_dataset(
    tokenizer: Any, layout: Any, prompts: list[list[dict[str, Any]]], references: list[str], max_new_tokens: int
) -> Any:
    """The official eval rows: prompt ids, and reference ids cut to ``max_new_tokens`` plus the first stop id."""
    from datasets import Dataset

    stop_ids = layout.stop_ids
    return Dataset.from_dict(
        {
            "input_ids": [layout.prompt_ids(p) for p in prompts],
            "output_ids": [
                tokenizer(r, add_special_tokens=False)["input_ids"][:max_new_tokens] + [stop_ids[0]]
                for r in references
            ],
        }
    )


def official_args(workdir: str, max_new_tokens: int, stop_ids: list[int], pad_id: int) -> Any:
    """``Seq2SeqTrainingArguments`` of the official evaluation: batch size 1, greedy generation with KV cache."""
    import torch
    from transformers import GenerationConfig, Seq2SeqTrainingArguments

    return Seq2SeqTrainingArguments(
        output_dir=workdir,
        per_device_eval_batch_size=1,
        predict_with_generate=True,
        generation_config=GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=stop_ids,
            pad_token_id=pad_id,
            use_cache=True,
        ),
        remove_unused_columns=False,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
    )


def official_predict(
    model: Any,
    tokenizer: Any,
    layout: Any,
    prompts: list[list[dict[str, Any]]],
    references: list[str],
    max_new_tokens: int,
    workdir: str,
) -> list[list[int]]:
    """Reply ids (cut at the first stop id) through the official ``Seq2SeqTrainer.predict`` path, one per batch."""
    import numpy as np

    from glmtune.infer.generate import split_reply

    collator_class, trainer_class = official_classes()
    stop_ids = layout.stop_ids
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    dataset = official_dataset(tokenizer, layout, prompts, references, max_new_tokens)
    trainer = trainer_class(
        model=model,
        args=official_args(workdir, max_new_tokens, stop_ids, pad_id),
        processing_class=tokenizer,
        data_collator=collator_class(tokenizer, padding="longest", return_tensors="pt"),
    )
    out = trainer.predict(dataset)
    return [split_reply([int(t) for t in row if t != -100], stop_ids, pad_id)[0] for row in np.asarray(out.predictions)]


def guard_cut(reply: list[int], rule: Any) -> tuple[list[int], bool]:
    """``reply`` as glmtune's repetition guard would have ended it: cut after the first token where it loops."""
    from glmtune.infer.runaway import tail_loops

    for end in range(1, len(reply) + 1):
        if tail_loops(reply[:end], rule):
            return reply[:end], True
    return reply, False


def decode_all(tokenizer: Any, replies: list[list[int]]) -> list[str]:
    """Decode reply ids the way ``generate_replies`` does: no special tokens, stripped."""
    return [tokenizer.decode(r, skip_special_tokens=True).strip() for r in replies]


def batched_predict(
    model: Any,
    tokenizer: Any,
    layout: Any,
    prompts: list[list[dict[str, Any]]],
    max_new_tokens: int,
    batch_size: int,
    loop_rule: Any = None,
) -> list[Any]:
    """Replies through glmtune's batched, length-sorted, left-padded generation (``loop_rule``: the guard)."""
    from glmtune.infer.generate import generate_replies

    return generate_replies(
        model, tokenizer, layout, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, loop_rule=loop_rule
    )


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """Call ``fn`` and return its result and the wall-clock seconds it took."""
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Rows of one dict each as a GitHub markdown table."""
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(r[k]) for k in head) + " |" for r in rows]
    return "\n".join(lines)


def run_all(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    """Build or load the model, warm up, and time the official path and glmtune with the guard off and on."""
    import torch

    from glmtune.infer.runaway import DEFAULT_LOOP_RULE
    from glmtune.layout import get_layout
    from glmtune.models import load_model, load_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            from glmtune.tiny.model import make_tiny
            from glmtune.world import tokenizer_corpus

            model_dir = str(make_tiny(Path(tmp) / "tiny", seed=0, corpus=tokenizer_corpus(0)))
        prompts, references = load_prompts(data, args.n)
        tokenizer = load_tokenizer(model_dir)
        layout = get_layout(tokenizer)
        model = load_model(model_dir)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model.to(device)
        # Warm up both paths (first-call allocations, kernel selection) outside the timed runs.
        official_predict(model, tokenizer, layout, prompts[:2], references[:2], 4, tmp)
        batched_predict(model, tokenizer, layout, prompts[:2], 4, args.batch_size)

        official, t_official = timed(
            official_predict, model, tokenizer, layout, prompts, references, args.max_new_tokens, tmp
        )
        free, t_free = timed(batched_predict, model, tokenizer, layout, prompts, args.max_new_tokens, args.batch_size)
        guarded, t_guarded = timed(
            batched_predict, model, tokenizer, layout, prompts, args.max_new_tokens, args.batch_size, DEFAULT_LOOP_RULE
        )
    cut = [guard_cut(r, DEFAULT_LOOP_RULE) for r in official]
    where = "cpu" if device == "cpu" else torch.cuda.get_device_name()
    return {
        "model": model_dir if args.model else "tiny GLM-4 (make_tiny seed 0)",
        "params": sum(p.numel() for p in model.parameters()),
        "device": f"{device} ({torch.get_num_threads()} threads)" if device == "cpu" else f"cuda ({where})",
        "references": references,
        "official": (decode_all(tokenizer, official), t_official),
        "official_cut": (decode_all(tokenizer, [ids for ids, _ in cut]), [looped for _, looped in cut]),
        "free": ([g.text for g in free], t_free),
        "guarded": ([g.text for g in guarded], t_guarded, [g.loop for g in guarded]),
    }


def compare(name: str, official: list[str], glmtune: list[str]) -> bool:
    """Print how many texts are identical; show the first difference; True when all are."""
    same = sum(a == b for a, b in zip(official, glmtune))
    print(f"{name}: texts identical {same}/{len(official)}")
    for i, (a, b) in enumerate(zip(official, glmtune)):
        if a != b:
            print(f"  first difference at prompt {i}:\n    official {a!r}\n    glmtune  {b!r}")
            break
    return same == len(official)


def main(argv: list[str] | None = None) -> int:
    """Run both evaluations on the same prompts and model; print a markdown table and whether texts match."""
    parser = argparse.ArgumentParser(prog="python -m bench.eval_speed", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: a fresh tiny GLM-4 model in a temp dir)")
    parser.add_argument("--data", default=str(DATA), help="data file (default: shared alpaca_zh_demo.json)")
    parser.add_argument("--n", type=int, default=200, help="number of prompts")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16, help="glmtune's batch size")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    args = parser.parse_args(argv)

    data = Path(args.data)
    if not data.is_file():
        print(f"skipped: data file {data} not found (the shared data folder is absent)")
        return 0
    import torch
    import transformers

    from glmtune.eval.text_metrics import METRIC_KEYS, text_metrics

    if args.threads:
        torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()  # not one "max_new_tokens and max_length" warning per sample
    r = run_all(args, data)
    refs, (official, t_official) = r["references"], r["official"]
    (cut, cut_loops), (free, t_free), (guarded, t_guarded, loops) = r["official_cut"], r["free"], r["guarded"]
    rows = []
    for name, bs, secs, texts in (
        ("official: Seq2SeqTrainer.predict (no guard)", 1, t_official, official),
        ("glmtune: generate_replies, guard off", args.batch_size, t_free, free),
        ("official, cut by the guard's rule afterwards", 1, t_official, cut),
        ("glmtune: generate_replies, guard on (default)", args.batch_size, t_guarded, guarded),
    ):
        met = text_metrics(texts, refs)
        rows.append({"method": name, "batch size": bs, "samples": len(refs), "seconds": f"{secs:.1f}",
                     "samples/s": f"{len(refs) / secs:.2f}", "speed-up": f"{t_official / secs:.1f}x",
                     **{k.upper(): f"{met[k]:.4f}" for k in METRIC_KEYS}})
    print(f"\nmodel {r['model']} ({r['params']:,} parameters) on {r['device']}; {len(refs)} prompts from "
          f"{data.name}; greedy, max_new_tokens {args.max_new_tokens}\n")
    print(markdown_table(rows) + "\n")
    ok = compare("guard off vs official", official, free)
    ok = compare("guard on vs official cut by the same rule", cut, guarded) and ok
    same_loops = sum(a == b for a, b in zip(cut_loops, loops))
    print(f"loop verdicts identical: {same_loops}/{len(loops)} (loops: official cut {sum(cut_loops)}, "
          f"glmtune {sum(loops)})")
    return 0 if ok and same_loops == len(loops) else 1


if __name__ == "__main__":
    sys.exit(main())
