"""Sharded training on CPU (gloo), two processes.

Through the Trainer (glmtune's path), ``training.fsdp`` cannot shard on CPU: accelerate 1.16 turns a CPU run into
``DistributedType.MULTI_CPU`` and only promotes GPU types to FSDP, so the model ends up in plain DDP. glmtune
therefore refuses ``training.fsdp`` without CUDA, and a canary test fails the day accelerate shards on CPU. torch's
own FSDP2 (``fully_shard``) does shard over gloo: the tiny model with LoRA, sharded per decoder layer, follows the
single-process loss curve and gathers the same adapter. This file is also the worker script
(``torchrun ... tests/train/test_fsdp_cpu.py fsdp2|trainer MODEL OUT``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TOLERANCE = 1e-4
STEPS = 5


def fsdp2_worker(model_dir: str, out: str) -> None:
    """Train LoRA on the tiny model for STEPS steps, sharded with FSDP2 when started by torchrun; write losses and
    the gathered adapter (rank 0)."""
    import torch
    import torch.distributed as dist
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear"))
    shard: dict[str, int] = {}
    if world > 1:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        dist.init_process_group("gloo")
        mesh = init_device_mesh("cpu", (world,))
        for layer in model.base_model.model.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        a = next(p for n, p in model.named_parameters() if "lora_A" in n)
        shard = {"local": a.to_local().numel(), "full": a.numel()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    gen = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(STEPS):
        ids = torch.randint(10, 200, (4, 24), generator=gen)  # the global batch; each rank trains its half
        mine = ids.chunk(world)[rank]
        loss = model(input_ids=mine, labels=mine).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        loss = loss.detach()
        if world > 1:
            dist.all_reduce(loss)
        losses.append(loss.item() / world)
    if world > 1:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    else:
        state = model.state_dict()
    if rank == 0:
        torch.save({k: v for k, v in state.items() if "lora_" in k}, Path(out) / "adapter.pt")
        (Path(out) / "result.json").write_text(json.dumps({"losses": losses, "shard": shard}))
    if world > 1:
        dist.barrier()  # rank 0 has written its files before any rank tears the group down
        dist.destroy_process_group()


def trainer_worker(model_dir: str, out: str) -> None:
    """What the Trainer makes of ``fsdp="full_shard auto_wrap"`` on CPU processes: write it down (rank 0)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    ids = torch.randint(10, 200, (4, 16), generator=torch.Generator().manual_seed(0))
    args = TrainingArguments(output_dir=out, max_steps=1, per_device_train_batch_size=2, fsdp="full_shard auto_wrap",
                             use_cpu=True, report_to="none", save_strategy="no", disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=[{"input_ids": r, "labels": r} for r in ids])
    trainer.train()
    if int(os.environ.get("RANK", "0")) == 0:
        (Path(out) / "trainer.json").write_text(json.dumps({
            "is_fsdp_enabled": trainer.is_fsdp_enabled, "distributed_type": trainer.accelerator.distributed_type.value,
            "wrapped": type(trainer.model_wrapped).__name__}))


def launch(tmp: Path, tiny_model: Path, kind: str, processes: int) -> None:
    """Run this file's ``kind`` worker in ``processes`` processes (torchrun for 2)."""
    tmp.mkdir(parents=True, exist_ok=True)
    prefix = ["torchrun", "--nproc_per_node", str(processes)] if processes > 1 else [sys.executable]
    proc = subprocess.run([*prefix, __file__, kind, str(tiny_model), str(tmp)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_glmtune_refuses_fsdp_without_cuda(tiny_model: Path) -> None:
    """training.fsdp on a CPU-only machine: a ConfigError that says the run would be DDP, not sharded."""
    import torch

    from glmtune.config.loader import ConfigError, validate_config
    from glmtune.train.gpu_options import check_gpu_options

    if torch.cuda.is_available():
        pytest.skip("the refusal is for machines without CUDA")
    config = validate_config({"model": {"name_or_path": str(tiny_model)}, "data": {"train_file": "t.jsonl"},
                              "training": {"fsdp": "full_shard auto_wrap"}})
    with pytest.raises(ConfigError, match="training.fsdp: 'full_shard auto_wrap' needs CUDA GPUs.*plain DDP"):
        check_gpu_options(config)


@pytest.mark.slow
def test_accelerate_runs_fsdp_as_ddp_on_cpu(tmp_path: Path, tiny_model: Path) -> None:
    """The canary behind the refusal: when this fails, accelerate shards on CPU and the refusal can go."""
    if shutil.which("torchrun") is None:
        pytest.skip("torchrun is not on PATH")
    launch(tmp_path, tiny_model, "trainer", 2)
    seen = json.loads((tmp_path / "trainer.json").read_text())
    assert seen == {"is_fsdp_enabled": False, "distributed_type": "MULTI_CPU", "wrapped": "DistributedDataParallel"}


@pytest.mark.slow
def test_fsdp2_over_gloo_matches_one_process(tmp_path: Path, tiny_model: Path) -> None:
    """Two processes, each holding half of every LoRA matrix, follow one process's curve on the whole batch and
    gather the same adapter."""
    if shutil.which("torchrun") is None:
        pytest.skip("torchrun is not on PATH")
    import torch

    launch(tmp_path / "one", tiny_model, "fsdp2", 1)
    launch(tmp_path / "two", tiny_model, "fsdp2", 2)
    one, two = (json.loads((tmp_path / d / "result.json").read_text()) for d in ("one", "two"))
    assert two["shard"]["local"] * 2 == two["shard"]["full"]  # sharded, not replicated
    assert len(one["losses"]) == len(two["losses"]) == STEPS
    assert max(abs(a - b) for a, b in zip(one["losses"], two["losses"])) < TOLERANCE
    assert one["losses"][-1] < one["losses"][0]
    a, b = (torch.load(tmp_path / d / "adapter.pt") for d in ("one", "two"))
    assert a.keys() == b.keys() and len(a) == 48  # A and B of 24 linear layers
    assert all(torch.allclose(a[k], b[k], atol=TOLERANCE) for k in a)  # measured: 3.4e-5 apart at most (AdamW)


if __name__ == "__main__":
    {"fsdp2": fsdp2_worker, "trainer": trainer_worker}[sys.argv[1]](sys.argv[2], sys.argv[3])
    # The work is done and written: leave without running interpreter teardown, where a gloo worker process was
    # seen to abort ("terminate called without an active exception", SIGABRT) once in a CI run.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
