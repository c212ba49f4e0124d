"""TRL as a peer: GLM-4 messages -> conversational prompt-completion records, trained by ``SFTTrainer``.

TRL's ``assistant_only_loss`` needs a chat template with ``{% generation %}`` markers, and TRL ships no training
template for glm-4-9b-chat, so the conversation is split into a prompt (every message before the last reply)
and a completion (the last reply): TRL then trains the completion only. The GLM-4 messages keep their form
(``metadata`` on function calls, ``tools`` on the system message, which is where the glm-4-9b-chat template
reads them), and the tools also go into TRL's ``tools`` column (a JSON string) for templates that take them
from ``apply_chat_template(tools=...)``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.peers.convert import ConversionError, convert_file
from bench.peers.spec import PeerSpec

VENV = "trl"
SCRIPT = Path(__file__).parent / "child" / "trl_train.py"
KEEP = ("role", "content", "metadata", "tools")


def to_prompt_completion(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """One GLM-4 conversation as a TRL conversational prompt-completion record (the last trained reply)."""
    clean = [{k: m[k] for k in KEEP if k in m and m[k] is not None} for m in messages]
    for m in clean:
        if m.get("role") not in ("system", "user", "assistant", "observation"):
            raise ConversionError(f"role {m.get('role')!r} is not a GLM-4 role")
    trained = [i for i, m in enumerate(messages) if m.get("role") == "assistant" and m.get("loss", True) is not False]
    if not trained:
        raise ConversionError("no assistant reply to train")
    last = trained[-1]
    if not clean[last].get("content"):
        raise ConversionError("the last trained reply is empty (the template would render nothing)")
    tools = [t for m in clean if m["role"] == "system" for t in m.get("tools") or []]
    return {"prompt": clean[:last], "completion": [clean[last]],
            "tools": json.dumps(tools, ensure_ascii=False) if tools else "null"}


def prepare(spec: PeerSpec, work: Path, output_dir: Path, bf16: bool) -> tuple[list[str], list[dict[str, Any]]]:
    """Write the converted data and the run settings; return the script argv and the skipped conversations."""
    records, skipped = convert_file(spec.train_jsonl, to_prompt_completion)
    if not records:
        raise ValueError(f"{spec.train_jsonl}: no conversation could be converted for TRL: {skipped[:3]}")
    work.mkdir(parents=True, exist_ok=True)
    data = work / "train.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    settings = {**asdict(spec), "data": str(data), "output_dir": str(output_dir), "bf16": bf16}
    config = work / "settings.json"
    config.write_text(json.dumps(settings, indent=2))
    return [str(SCRIPT), str(config)], skipped
