"""Config validation and CLI error handling: exit code 2, the key or path named, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from glmtune.config.loader import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture()
def data_file(tmp_path: Path) -> Path:
    return write(tmp_path / "d.jsonl", '{"messages": [{"role": "user", "content": "q"}, '
                 '{"role": "assistant", "content": "a"}]}\n')


def base_yaml(data_file: Path, extra: str = "") -> str:
    out = data_file.parent / "run"
    body = f"model:\n  name_or_path: /nonexistent/model\ndata:\n  train_file: {data_file}\n"
    if "training:" not in extra:
        body += f"training:\n  output_dir: {out}\n"
    return body + extra


def test_official_lora_yaml_loads(data_file: Path):
    cfg = load_config(ROOT / "configs" / "lora.yaml", [f"data.train_file={data_file}"])
    assert (cfg.peft.lora.r, cfg.peft.lora.alpha, cfg.peft.lora.dropout) == (8, 32, 0.1)
    assert cfg.peft.lora.target_modules == ["q_proj", "k_proj", "v_proj"]
    assert cfg.training.learning_rate == 5e-4 and cfg.training.max_grad_norm == 1.0
    assert cfg.training.lr_scheduler_type == "linear" and cfg.training.warmup_ratio == 0.0
    assert cfg.data.combine is True and cfg.data.max_length == 1025


def test_overrides_are_typed(tmp_path: Path, data_file: Path):
    path = write(tmp_path / "c.yaml", base_yaml(data_file))
    cfg = load_config(path, ["training.learning_rate=3e-4", "data.combine=false", "peft.lora.target_modules=[q_proj]"])
    assert cfg.training.learning_rate == 3e-4
    assert cfg.data.combine is False
    assert cfg.peft.lora.target_modules == ["q_proj"]


@pytest.mark.parametrize(
    ("extra", "overrides", "needle"),
    [
        ("training:\n  learning_rat: 1\n", [], "training.learning_rat: unknown key"),
        ("", ["training.learning_rate=fast"], "training.learning_rate"),
        ("", ["training.per_device_train_batch_size=0"], "training.per_device_train_batch_size"),
        ("", ["peft.method=magic"], "peft.method"),
        ("", ["nonsense"], "must look like section.key=value"),
    ],
)
def test_bad_keys_and_types_are_named(tmp_path, data_file, extra, overrides, needle):
    path = write(tmp_path / "c.yaml", base_yaml(data_file, extra))
    with pytest.raises(ConfigError) as exc:
        load_config(path, overrides)
    assert needle in str(exc.value)


def test_missing_files_are_named(tmp_path, data_file):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    path = write(tmp_path / "c.yaml", base_yaml(tmp_path / "missing.jsonl"))
    with pytest.raises(ConfigError, match="data.train_file: file not found"):
        load_config(path)
    path = write(tmp_path / "c2.yaml", "data:\n  train_file: x\n")
    with pytest.raises(ConfigError, match="model: required key is missing"):
        load_config(path)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "glmtune", *args], capture_output=True, text=True, timeout=120)


def test_cli_config_error_exits_2_without_traceback(tmp_path, data_file):
    path = write(tmp_path / "c.yaml", base_yaml(data_file, "training:\n  learning_rat: 1\n"))
    proc = run_cli("train", str(path))
    assert proc.returncode == 2
    assert "training.learning_rat: unknown key" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_missing_model_exits_2(tmp_path, data_file):
    proc = run_cli("train", str(write(tmp_path / "c.yaml", base_yaml(data_file))))
    assert proc.returncode == 2
    assert "model folder not found: /nonexistent/model" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_fp16_is_refused_before_loading(tmp_path, data_file):
    proc = run_cli("train", str(write(tmp_path / "c.yaml", base_yaml(data_file))), "training.fp16=true")
    assert proc.returncode == 2
    assert "fp16" in proc.stderr and "overflow" in proc.stderr and "allow_fp16" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_removed_fused_norm_rotary_key_loads_with_a_warning(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    (tmp_path / "d.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    cfg.write_text(f"model:\n  name_or_path: m\ndata:\n  train_file: {tmp_path / 'd.jsonl'}\n"
                   "training:\n  fused_norm_rotary: true\n")
    with pytest.warns(UserWarning, match="fused_norm_rotary was removed"):
        config = load_config(cfg)
    assert "fused_norm_rotary" not in config.training.model_dump()
