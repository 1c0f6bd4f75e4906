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
# llama-cpp-python compiles llama.cpp with -march=native. Where the CPU advertises AMX but the
# kernel or VM does not grant the tile state (seen on 2-core dev VMs), AMX code dies with
# "Illegal instruction"; native minus AMX runs everywhere. A CMAKE_ARGS of your own wins.
if [ -z "${CMAKE_ARGS:-}" ] && grep -qw amx_tile /proc/cpuinfo 2>/dev/null; then
  export CMAKE_ARGS='-DCMAKE_C_FLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" -DCMAKE_CXX_FLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"'
fi
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
if [ -n "${CMAKE_ARGS:-}" ]; then
  case ",$extras," in *,dev,*|*,llama,*)
    # compiled here with the flags above: a wheel cached from a build without them would be reused
    python -m pip install -q --no-cache-dir "llama-cpp-python[server]==0.3.36" ;;
  esac
fi
if [ -n "$extras" ]; then
  python -m pip install -q -e ".[${extras}]"
  case ",$extras," in *,dev,*)
    # label-studio-sdk's converter for the exchange tests, without its heavy optional deps (opencv,
    # an older numpy): what the converter imports is in the dev extra.
    python -m pip install -q --no-deps "label-studio-sdk==2.1.2" ;;
  esac
else
  python -m pip install -q -e .
fi
echo "guardmatch installed in $(pwd)/.venv (extras: ${extras:-none})" >&2
