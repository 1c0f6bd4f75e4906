"""Finished cells as small committed archives, so a fresh clone resumes a grid where it stopped.

A grid's ``output_dir`` (``runs/``) is machine-local: weights, checkpoints, feature caches. A grid
that takes longer than one machine lives (the top-layer benchmark: hours of CPU per seed) needs its
*results* somewhere that travels with the code. With ``archive_dir`` set in the grid config, the
runner writes every finished cell as ``<archive_dir>/<grid name>/<cell key>.tar.gz`` holding only what the
report and the convergence plots read (``cell.json``, ``config.yaml``, ``run.json``,
``metrics.jsonl``, ``eval/``; ~40 KB), and restores an archived cell into its directory when the
local copy is missing, only if the archived config hash is the one the current config gives (an
archive from another config is never taken for a result of this one). Split manifests, weights,
checkpoints and error logs stay local.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

from guardmatch.errors import GuardmatchError
from guardmatch.grid.store import CELL_FILE, read_cell_file, write_cell_file

ARCHIVED = ("config.yaml", "run.json", "metrics.jsonl", "eval/evaluation.json", "eval/evaluation.md")
ARCHIVED_GLOBS = ("eval/scores/*.npy",)


class ArchiveError(GuardmatchError, ValueError):
    """An archived cell that cannot be read back."""


def archive_path(archive_dir: str | Path, grid_name: str, key: str) -> Path:
    """``<archive_dir>/<grid name>/<task>/<pool>/<arm>/<budget>/seed<k>.tar.gz`` (grids that extend
    one another share ``archive_dir`` but never a file)."""
    return Path(archive_dir) / grid_name / f"{key}.tar.gz"


def _members(cell_dir: Path) -> list[Path]:
    files = [cell_dir / name for name in ARCHIVED if (cell_dir / name).is_file()]
    for pattern in ARCHIVED_GLOBS:
        files += sorted(cell_dir.glob(pattern))
    return files


def archived_record(path: Path) -> dict[str, Any] | None:
    """The ``cell.json`` inside an archive, or None when there is no archive."""
    if not path.exists():
        return None
    try:
        with tarfile.open(path, "r:gz") as tar:
            member = tar.extractfile(CELL_FILE)
            if member is None:
                raise KeyError(CELL_FILE)
            return json.loads(member.read())
    except (tarfile.TarError, KeyError, OSError, json.JSONDecodeError) as exc:
        raise ArchiveError(f"{path}: not a readable cell archive ({type(exc).__name__}: {exc}); "
                           "delete it to rerun the cell") from None


def export_cell(cell_dir: str | Path, path: str | Path) -> bool:
    """Write a finished cell's archive (atomically); False when it is not finished or already archived."""
    cell_dir, path = Path(cell_dir), Path(path)
    record = read_cell_file(cell_dir)
    if record is None or record.get("status") != "done":
        return False
    current = archived_record(path)
    if current is not None and current.get("config_hash") == record.get("config_hash") \
            and current.get("finished") == record.get("finished"):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # fixed metadata (gzip and tar times 0, no file name): the same cell always gives the same bytes
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for file in _members(cell_dir):
            _add(tar, file.relative_to(cell_dir).as_posix(), file.read_bytes())
        _add(tar, CELL_FILE, (cell_dir / CELL_FILE).read_bytes())  # last, as on disk
    os.replace(tmp, path)
    return True


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def restore_cell(path: str | Path, cell_dir: str | Path, config_hash: str) -> bool:
    """Unpack an archived cell into ``cell_dir`` when its config hash matches; ``cell.json`` goes last.

    Returns False (and touches nothing) when there is no archive or it holds another config's result.
    """
    path, cell_dir = Path(path), Path(cell_dir)
    record = archived_record(path)
    if record is None or record.get("status") != "done" or record.get("config_hash") != config_hash:
        return False
    cell_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "r:gz") as tar:
        for member in tar.getmembers():
            if member.name == CELL_FILE:
                continue
            if not member.isfile() or member.name.startswith("/") or ".." in Path(member.name).parts:
                raise ArchiveError(f"{path}: unexpected member {member.name!r}")
            target = cell_dir / member.name
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(member)
            assert src is not None  # a regular file
            target.write_bytes(src.read())
    write_cell_file(cell_dir, {**record, "path": str(cell_dir), "restored_from": str(path)})
    return True
