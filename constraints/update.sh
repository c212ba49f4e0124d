#!/usr/bin/env bash
# Try the newest dependency versions that pyproject.toml allows, in a fresh virtualenv, and run the suite.
# If it passes, constraints/ci.txt is rewritten with the exact versions that passed; if not, nothing changes.
#
#   bash constraints/update.sh [pytest args...]      e.g.  bash constraints/update.sh -m "not slow"
#
# To move an upper bound forward (say transformers <5.26 -> <5.27), edit pyproject.toml first, then run this.
# PYTHON picks the interpreter (default python3); the virtualenv is made in a temporary folder and removed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$python" -m venv "$work/venv"
py="$work/venv/bin/python"
"$py" -m pip install --quiet --upgrade pip
cd "$root"
"$py" -m pip install --quiet torch==2.13.0 -e '.[test]'
echo "installed:"
"$py" -m pip freeze --exclude-editable | grep -iE '^(torch|transformers|peft|accelerate|datasets|tokenizers|fastapi|openai)==' \
  | sed 's/^/  /'
HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false "$py" -m pytest -q "$@"
{
  echo "# Exact versions of the last green CI run (Python 3.11, CPU). Used by .ci/run and the README's test command."
  echo "# Regenerate with: bash constraints/update.sh   (see the README, \"Tested versions\")"
  "$py" -m pip freeze --exclude-editable | sed -E 's/^torch==([0-9.]+)\+cpu$/torch==\1/'
} > "$root/constraints/ci.txt.new"
mv "$root/constraints/ci.txt.new" "$root/constraints/ci.txt"
echo "the suite passed; constraints/ci.txt now pins these versions:"
git -C "$root" diff --stat -- constraints/ci.txt || true
