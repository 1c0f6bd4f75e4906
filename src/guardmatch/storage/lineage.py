"""Which artifacts were derived from which pool, so that ``guardmatch purge`` finds them all.

The registry is ``<cache root>/derived.sqlite``. Writers of view caches, embeddings, predictions,
review stores ... call :func:`register_derived`; :func:`purge` deletes a pool, its sidecars and every
derivative it owns alone (from a view cache shared with other sources, only the records of the
pool's texts go). Purge unlinks only: disk blocks, snapshots and backups are not scrubbed (encrypt
at rest and destroy the key for that: crypto-shredding).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path

from guardmatch.errors import GuardmatchError
from guardmatch.storage.audit import audit_log, now, who
from guardmatch.storage.files import cache_root, read_secure_bytes, secure_open

MANIFEST_SUFFIX = ".manifest.json"


def manifest_path(pool: str | os.PathLike) -> Path:
    """The sidecar manifest of a pool file: ``pool.jsonl`` -> ``pool.manifest.json``."""
    pool = Path(pool)
    return pool.with_name(pool.name.removesuffix(".jsonl") + MANIFEST_SUFFIX)


def pool_fingerprint(path: str | os.PathLike) -> str:
    """A stable id for a data source: ``pool:<pool_id>`` from its manifest, else ``path:<hash>``.

    The manifest id survives moving or resuming the pool; other files are identified by their
    resolved path (cheap: a multi-GB file is never hashed).
    """
    path = Path(path)
    man = manifest_path(path)
    if man.is_file():
        with contextlib.suppress(ValueError, OSError, UnicodeDecodeError):
            pool_id = json.loads(read_secure_bytes(man)).get("pool_id")
            if pool_id:
                return f"pool:{pool_id}"
    return "path:" + hashlib.sha256(str(path.expanduser().resolve()).encode("utf-8")).hexdigest()[:32]


def _registry() -> sqlite3.Connection:
    db = cache_root() / "derived.sqlite"
    if not db.exists():
        with secure_open(db, "a"):
            pass
    conn = sqlite3.connect(db, timeout=30)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS derived (source_fp TEXT, source_path TEXT, path TEXT, kind TEXT,"
        " created TEXT, who TEXT, PRIMARY KEY (source_fp, path))"
    )
    return conn


def register_derived(source: str | os.PathLike, path: str | os.PathLike, kind: str = "artifact") -> str:
    """Record that ``path`` (file or directory) was computed from ``source`` (a pool or another artifact).

    Call it from every writer of a view cache, embeddings, predictions, review DB, ... so that
    ``purge(source)`` removes ``path`` too. Returns the source fingerprint.
    """
    fp = pool_fingerprint(source)
    src = str(Path(source).expanduser().resolve())
    dst = str(Path(path).expanduser().resolve())
    with contextlib.closing(_registry()) as conn, conn:
        conn.execute(
            "INSERT OR REPLACE INTO derived VALUES (?, ?, ?, ?, ?, ?)", (fp, src, dst, kind, now(), who())
        )
    return fp


def derived_from(source: str | os.PathLike) -> list[dict]:
    """Registered artifacts derived from ``source``, transitively (derivatives of derivatives too)."""
    out: list[dict] = []
    seen: set[str] = set()
    frontier = [Path(source)]
    with contextlib.closing(_registry()) as conn:
        while frontier:
            src = frontier.pop()
            fp = pool_fingerprint(src)
            rows = conn.execute(
                "SELECT source_fp, source_path, path, kind, created, who FROM derived"
                " WHERE source_fp = ? OR source_path = ?",
                (fp, str(src.expanduser().resolve())),
            ).fetchall()
            for r in rows:
                rec = dict(zip(("source_fp", "source_path", "path", "kind", "created", "who"), r))
                if rec["path"] in seen:
                    continue
                seen.add(rec["path"])
                out.append(rec)
                frontier.append(Path(rec["path"]))
    return out


class PurgeBusyError(GuardmatchError, RuntimeError):
    """A view cache to filter is being written by another run; nothing was removed."""


@dataclass
class PurgeReport:
    """What ``purge`` removed (or would remove with ``dry_run``).

    ``filtered``: shared artifacts (a view cache that other sources registered too) kept, with the
    number of per-text records removed from each; ``kept_shared``: shared artifacts kept whole,
    with the reason (nothing of the pool's in them can be told apart).
    """

    pool: str
    removed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    dry_run: bool = False
    filtered: dict[str, int] = field(default_factory=dict)
    kept_shared: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _size(path: Path) -> int:
    if path.is_dir() and not path.is_symlink():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return path.lstat().st_size


def pool_sidecars(pool: str | os.PathLike) -> list[Path]:
    """Files that belong to a pool: its manifest and ingest state (the ``<stem>.*`` sidecars)."""
    pool = Path(pool)
    stem = pool.name.removesuffix(".jsonl")
    return [pool.with_name(stem + s) for s in (MANIFEST_SUFFIX, ".ingest-state.sqlite",
                                               ".ingest-state.sqlite-journal", ".ingest-state.sqlite-wal",
                                               ".ingest-state.sqlite-shm", ".errors.jsonl")]


def _other_owners(conn: sqlite3.Connection, path: str, fps: set[str], paths: set[str]) -> list[str]:
    """Sources outside the purge that registered ``path`` too (so it is shared, not the pool's own)."""
    rows = conn.execute("SELECT source_fp, source_path FROM derived WHERE path = ?", (path,)).fetchall()
    return sorted({src for fp, src in rows if fp not in fps and src not in paths})


def _text_keys(source: str | os.PathLike) -> set[tuple[str, str]] | None:
    """``(task, content hash)`` of every text in ``source`` (both tasks), or None if unreadable.

    These are the keys view caches store records under (``Example.content_hash(task)``).
    """
    from guardmatch.data.example import Task
    from guardmatch.data.loaders import load_file

    path = Path(source)
    if not path.is_file():
        return None
    keys: set[tuple[str, str]] = set()
    read_any = False
    for task in Task:
        try:
            res = load_file(path, task=task, require_label=False, errors="skip", max_text_chars=None)
        except Exception:  # noqa: BLE001 - a format without this task, or unreadable
            continue
        read_any = True
        keys.update((task.value, ex.content_hash(task)) for ex in res.examples)
    return keys if read_any else None


def _is_view_cache(path: Path) -> bool:
    return path.is_dir() and (path / "manifest.json").is_file() and (
        (path / "shards").is_dir() or (path / "records.jsonl.gz").is_file())


def _filter_view_cache(path: Path, drop: set[tuple[str, str]], dry_run: bool) -> int:
    """Remove the records of the texts ``drop`` from a view cache (:meth:`ViewCache.remove_keys`)."""
    from guardmatch.augment.cache import CacheLockedError, ViewCache

    try:
        return ViewCache.open(path).remove_keys(drop, dry_run=dry_run)
    except CacheLockedError:
        raise PurgeBusyError(f"{path} is being written by a `guardmatch augment` run; purge again "
                           "when it has finished (nothing was removed)") from None


def purge(pool: str | os.PathLike, dry_run: bool = False) -> PurgeReport:
    """Delete ``pool``, its sidecars and every registered derivative; drop them from the registry.

    An artifact that other sources registered too (a view cache shared by several pools) is not
    the pool's to delete: a view cache keeps its file and loses only the records of the pool's texts
    (those no other owner holds: reference counts by text); any other shared artifact is kept whole
    and listed in ``kept_shared``. Registry entries of other sources are never dropped. Audited as
    action ``purge``. Unlinks only: blocks on disk, snapshots and backups are not scrubbed (use
    encryption at rest and discard the key for that).
    """
    pool = Path(pool).expanduser()
    pool_fp = pool_fingerprint(pool)
    derived = derived_from(pool)  # before the manifest (which holds the fingerprint) goes
    purged_paths = {str(pool.resolve())} | {d["path"] for d in derived}
    purged_fps = {pool_fp} | {pool_fingerprint(p) for p in purged_paths}
    report = PurgeReport(pool=str(pool), dry_run=dry_run)
    shared: dict[str, list[str]] = {}
    with contextlib.closing(_registry()) as conn:
        for d in derived:
            owners = _other_owners(conn, d["path"], purged_fps, purged_paths)
            if owners:
                shared[d["path"]] = owners
    pool_keys: set[tuple[str, str]] | None = None
    plans: list[tuple[Path, set[tuple[str, str]]]] = []
    for path, owners in shared.items():
        target = Path(path)
        if not target.exists():
            continue
        if not _is_view_cache(target):
            report.kept_shared[path] = f"also derived from {', '.join(owners)}; kept whole"
            continue
        if pool_keys is None:
            pool_keys = _text_keys(pool) or set()
        if not pool_keys:
            report.kept_shared[path] = "the pool's texts cannot be read, so its records cannot be told apart; kept whole"
            continue
        others = [_text_keys(o) for o in owners]
        drop = set(pool_keys)
        for keys in others:  # a text another owner holds too keeps its views (reference count > 0)
            drop -= keys or set()
        plans.append((target, drop))
    for target, drop in plans:  # shared caches first: a busy cache stops the purge before anything goes
        report.filtered[str(target)] = _filter_view_cache(target, drop, dry_run)
    targets = [pool, *pool_sidecars(pool), *(Path(d["path"]) for d in derived if d["path"] not in shared)]
    for t in targets:
        if not (t.exists() or t.is_symlink()):
            if t == pool or any(str(t) == d["path"] for d in derived):
                report.missing.append(str(t))
            continue
        report.bytes_freed += _size(t)
        report.removed.append(str(t))
        if dry_run:
            continue
        if t.is_dir() and not t.is_symlink():
            shutil.rmtree(t)
        else:
            t.unlink()
    if not dry_run:
        with contextlib.closing(_registry()) as conn, conn:
            for p in purged_paths:
                if p in shared:  # kept: only the purged sources' entries for it go
                    continue
                conn.execute("DELETE FROM derived WHERE path = ?", (p,))
            for p in purged_paths:
                conn.execute("DELETE FROM derived WHERE source_path = ?", (p,))
            for fp in purged_fps:
                conn.execute("DELETE FROM derived WHERE source_fp = ?", (fp,))
        audit_log("purge", pool, None, removed=report.removed, bytes_freed=report.bytes_freed,
                  filtered=report.filtered, kept_shared=sorted(report.kept_shared))
    return report
