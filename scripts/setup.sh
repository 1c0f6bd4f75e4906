#!/usr/bin/env bash
# Create .venv and install guardmatch with CPU PyTorch pinned (an unpinned torch pulls a
# multi-GB CUDA build).  Usage: scripts/setup.sh [EXTRAS]   e.g. scripts/setup.sh dev
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
if [ -n "$extras" ]; then
  python -m pip install -q -e ".[${extras}]"
else
  python -m pip install -q -e .
fi
echo "guardmatch installed in $(pwd)/.venv (extras: ${extras:-none})" >&2
