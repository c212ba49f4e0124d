#!/usr/bin/env bash
# Create the peers' virtual environments: LLaMA-Factory and TRL, each in its own venv, from PyPI only.
#
#   bash bench/peers/setup.sh [llamafactory|trl ...]     (default: both)
#   bash bench/peers/setup.sh check                       (only a bare venv that must see this torch; no installs)
#
# Location: $GLMTUNE_BENCH_VENVS (default bench/.venvs). Idempotent: an existing venv whose peer already
# imports at the pinned version is left alone; delete the folder to rebuild it.
#
# torch is never installed here. Each venv reuses the torch of the interpreter that runs this script ($PYTHON:
# CPU torch 2.13.0 on the project's machines, a CUDA build on a GPU machine): bench/peers/outer_torch.py links
# torch and the distributions it requires (nothing else) into the venv's outer-torch/ folder, and a `.pth` file
# appends that folder to sys.path. That works for a plain interpreter and for a virtualenv's python alike
# (--system-site-packages would see the *base* interpreter's packages, not a virtualenv's). Every pip call runs under a constraint pinning torch to that exact version, so pip can never
# pull a multi-GB CUDA torch or torchaudio: if torch were not visible, it fails instead. Everything the peer pins
# (transformers, peft, ...) is installed inside the venv, where it shadows the outer copy.
#
# LLaMA-Factory 0.9.5 is installed with --no-deps plus its text-SFT dependencies, listed below. Left out, and why:
#   torchaudio, torchvision, av  - audio/image/video inputs of multimodal templates only. PyPI has no torchaudio
#                                  for torch 2.13 (its newest, 2.11.1, is a CUDA build pinned to torch 2.11 that
#                                  fails to load against CPU torch), and installing one would pull its own torch.
#                                  llamafactory.data.mm_plugin imports torchaudio unconditionally, so the venv gets
#                                  a placeholder module `torchaudio` whose every attribute raises a clear error:
#                                  text SFT never touches it, any audio use fails loudly.
#   gradio                       - the web UI (llamafactory-cli webui) only
#   hf-transfer, modelscope      - hub download accelerators; the benchmarks run offline from local folders
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venvs="${GLMTUNE_BENCH_VENVS:-$root/bench/.venvs}"
python="${PYTHON:-python3}"

LLAMAFACTORY_VERSION=0.9.5
TRL_VERSION=1.16.0
# LLaMA-Factory 0.9.5's own pins (its Requires-Dist), minus the multimodal/web-UI packages named above.
LLAMAFACTORY_DEPS=(
  "transformers>=4.55.0,<=5.6.0,!=4.52.0,!=4.57.0" "peft>=0.18.0,<=0.18.1" "accelerate>=1.3.0,<=1.11.0"
  "datasets>=2.16.0,<=4.0.0" "trl>=0.18.0,<=0.24.0" "torchdata>=0.10.0,<=0.11.0" "tyro<0.9.0"
  einops fire omegaconf sentencepiece tiktoken protobuf pydantic pyyaml safetensors scipy pandas numpy
  "matplotlib>=3.7.0" packaging fastapi sse-starlette uvicorn
)

die() { echo "setup.sh: error: $*" >&2; exit 1; }

"$python" -c "import torch" 2>/dev/null || die "$python has no torch; install it first (pip install torch==2.13.0)"
torch_version="$("$python" -c 'import torch; print(torch.__version__)')"
constraints="$venvs/torch-constraint.txt"

make_venv() {  # make_venv NAME -> path of its python
  local dir="$venvs/$1"
  if [[ ! -x "$dir/bin/python" ]]; then
    echo "creating $dir (sees $python's torch $torch_version)" >&2
    "$python" -m venv "$dir" || die "could not create the venv $dir"
  fi
  local site
  site="$("$dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  "$python" "$here/outer_torch.py" "$dir/outer-torch" >/dev/null || die "could not link $python's torch into $dir"
  echo "$dir/outer-torch" > "$site/glmtune-outer-torch.pth"  # appended after the venv's own packages
  echo "$dir/bin/python"
}

check_torch() {  # the venv must still see the machine's torch, not a copy of its own
  local py="$1" got
  got="$("$py" -c 'import torch; print(torch.__version__)')" || die "torch does not import in $py"
  [[ "$got" == "$torch_version" ]] || die "$py sees torch $got, expected the machine's $torch_version"
}

setup_llamafactory() {
  local py
  py="$(make_venv llamafactory)"
  local marker="$venvs/llamafactory/.glmtune-setup-llamafactory-$LLAMAFACTORY_VERSION"
  if [[ -f "$marker" ]]; then
    echo "llamafactory $LLAMAFACTORY_VERSION already installed"
  else
    "$py" -m pip install --quiet -c "$constraints" "${LLAMAFACTORY_DEPS[@]}" \
      || die "installing LLaMA-Factory's dependencies failed"
    "$py" -m pip install --quiet --no-deps "llamafactory==$LLAMAFACTORY_VERSION" || die "installing llamafactory failed"
    "$py" -c "import torchaudio" 2>/dev/null || "$py" "$here/torchaudio_placeholder.py" \
      || die "writing the torchaudio placeholder failed"
    touch "$marker"
  fi
  check_torch "$py"
  "$py" -c "import llamafactory.train.tuner" || die "llamafactory does not import in $py"
}

setup_trl() {
  local py
  py="$(make_venv trl)"
  local marker="$venvs/trl/.glmtune-setup-trl-$TRL_VERSION"
  if [[ -f "$marker" ]]; then
    echo "trl $TRL_VERSION already installed"
  else
    # torch is already satisfied by the outer site-packages, and the constraint keeps it
    "$py" -m pip install --quiet -c "$constraints" "trl==$TRL_VERSION" peft || die "installing trl failed"
    touch "$marker"
  fi
  check_torch "$py"
  "$py" -c "from trl import SFTTrainer, SFTConfig" || die "trl does not import in $py"
}

peers=("$@")
[[ ${#peers[@]} -gt 0 ]] || peers=(llamafactory trl)
mkdir -p "$venvs"
echo "torch==$torch_version" > "$constraints"
for peer in "${peers[@]}"; do
  case "$peer" in
    llamafactory) setup_llamafactory ;;
    trl) setup_trl ;;
    check) check_torch "$(make_venv check)"; echo "check: $venvs/check sees torch $torch_version" ;;
    *) die "unknown peer '$peer' (llamafactory, trl or check)" ;;
  esac
done

[[ " ${peers[*]} " == *" check "* ]] && exit 0
echo "versions:"
for peer in "${peers[@]}"; do
  "$venvs/$peer/bin/python" - "$peer" <<'EOF'
import importlib, sys
peer = sys.argv[1]
names = {"llamafactory": ["llamafactory", "transformers", "peft", "accelerate", "datasets", "trl", "torch"],
         "trl": ["trl", "transformers", "peft", "accelerate", "datasets", "torch"]}[peer]
print(f"  {peer}: " + ", ".join(f"{n} {importlib.import_module(n).__version__}" for n in names))
EOF
done
