"""bench.gpu_check cannot run here (no CUDA): its refusal, its report helpers, and its measurement loop on the CPU
with the tiny model (the same code, in fp32 and without memory numbers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.gpu_check import agreement, dense_settings, main, render, table, verdict
from bench.gpu_check_runs import Setting, generation_speed, make_batches, planned_defaults, train_run


def test_refuses_clearly_without_cuda(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert main(["--out", str(tmp_path / "out")]) == 2
    assert "bench.gpu_check needs a CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_settings_switch_each_default_once() -> None:
    names = [s.name for s in dense_settings({"chunked": True, "checkpointing": "selective"}, False, False)]
    assert names == ["plain transformers+PEFT", "glmtune defaults", "chunked loss off", "checkpointing none",
                     "checkpointing full", "QLoRA 4-bit base"]
    more = dense_settings({"chunked": True, "checkpointing": False}, True, True)
    assert [s.name for s in more][-2:] == ["Liger kernels", "torch.compile"] and more[-1].compile
    assert "checkpointing none" not in [s.name for s in more]


def _row(name: str, losses: list[float], **extra: object) -> dict:
    base = {"name": name, "chunked": True, "checkpointing": "selective", "quantization": "none", "plain": False,
            "losses": losses, "tokens_per_s": 12_345.0, "peak_bytes": 10 * 2**30, "estimate": {"total": 11 * 2**30}}
    return {**base, **extra}


def test_report_compares_with_plain_and_the_planner() -> None:
    rows = [_row("plain transformers+PEFT", [2.0, 1.5], plain=True, chunked=False, checkpointing=False),
            _row("glmtune defaults", [2.001, 1.502]),
            _row("QLoRA 4-bit base", [2.2, 1.7], quantization="4bit"),
            _row("wrong", [2.5, 1.5]), {"name": "broken", "error": "RuntimeError: out of memory"}]
    agreement(rows)
    assert rows[1]["losses_agree"] and rows[2]["losses_agree"] and rows[3]["losses_agree"] is False
    assert abs(rows[1]["max_loss_diff"] - 0.002) < 1e-9
    lines = table(rows)
    assert "| glmtune defaults | chunked | selective | bf16 | 12,345 | 10.00 | 11.00 | 1.10 | 0.0020 | 1.5020 |" in lines
    assert any(line.startswith("| broken | failed: RuntimeError") for line in lines)
    results = {"date": "2026-01-01", "machine": "H100", "args": {"steps": 2, "micro": 4, "length": 1024, "warmup": 1},
               "dense": {"params": 500, "defaults": {"chunked": True, "checkpointing": "selective"}, "rows": rows},
               "moe": {"params": 90, "defaults": {"chunked": True, "checkpointing": False}, "rows": []},
               "generation": {"prompts": 32, "batch_size": 16, "max_new_tokens": 128, "tokens": 4096,
                              "seconds": 2.0, "tokens_per_s": 2048.0},
               "smoke": [{"name": "QLoRA 4-bit", "result": "ok: saved adapter"}]}
    results["verdict"] = verdict(results)
    assert results["verdict"].startswith("failed: broken; losses disagree: wrong; planner estimate / measured peak "
                                         "between 1.10 and 1.10")
    text = render(results)
    assert "## dense: 500 parameters" in text and "2,048 tokens/s" in text and "| QLoRA 4-bit | ok" in text


def test_measurement_loop_runs_on_cpu(tiny_model: Path) -> None:
    """plain (full logits) and glmtune's chunked loss with selective checkpointing give the same losses in fp32."""
    from transformers import AutoConfig

    batches = make_batches(AutoConfig.from_pretrained(tiny_model).vocab_size, 3, 2, 32)
    assert (batches[0][1][:, :8] == -100).all() and (batches[0][1][:, 8:] != -100).all()
    plain = train_run(Setting("plain", chunked=False, plain=True), tiny_model, batches, device="cpu", warmup=1)
    ours = train_run(Setting("glmtune", chunked=True, checkpointing="selective"), tiny_model, batches, device="cpu",
                     warmup=1)
    assert "error" not in plain and "error" not in ours, (plain.get("error"), ours.get("error"))
    assert max(abs(a - b) for a, b in zip(plain["losses"], ours["losses"])) < 1e-4
    assert ours["tokens_per_s"] > 0 and ours["trainable"] == plain["trainable"] > 0
    assert ours["estimate"]["total"] > 0 and ours["estimate"]["activations"] < plain["estimate"]["activations"]


def test_planner_defaults_and_generation_on_cpu(tiny_model: Path, tmp_path: Path) -> None:
    defaults = planned_defaults(tiny_model, 2, 64, 0)
    assert defaults["chunked"] is True and defaults["checkpointing"] in (False, "selective", True)
    assert defaults["memory_estimate"]["total"] > 0
    speed = generation_speed(tiny_model, tmp_path, prompts=2, max_new_tokens=4, batch_size=2)
    assert speed["tokens"] >= 2 and speed["tokens_per_s"] > 0
