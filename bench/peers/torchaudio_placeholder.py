"""Write a placeholder ``torchaudio`` into the running venv (see bench/peers/setup.sh for why)."""

import sysconfig
from pathlib import Path

TEXT = '''"""Placeholder written by glmtune's bench/peers/setup.sh: torchaudio is not installed in this venv.

LLaMA-Factory imports torchaudio unconditionally for audio inputs; text SFT never uses it. Any use fails here.
"""


def __getattr__(name):
    raise ImportError(f"torchaudio.{name}: torchaudio is not installed in this benchmark venv (text-only SFT); "
                      "see bench/peers/setup.sh")
'''

if __name__ == "__main__":
    target = Path(sysconfig.get_paths()["purelib"]) / "torchaudio"
    target.mkdir(parents=True, exist_ok=True)
    (target / "__init__.py").write_text(TEXT)
    print(f"wrote the torchaudio placeholder {target}")
