"""The on-disk view cache: generated once, read by training.

Layout (one directory per augmenter fingerprint)::

    <cache root>/views/<augmenter-name>-<fingerprint[:12]>/
        manifest.json          augmenter description, fingerprint, counts, rejection counts (atomic rewrite)
        records.jsonl.gz       packed records (``guardmatch views pack``): what ships with the repository
        shards/<run-id>.jsonl  append-only records, one JSON object a line, one shard per run
        lock                   flock'ed by the one writer

Caches are found under the cache root first, then in the *shipped* views folder (``views/`` of a
source checkout, or ``$GUARDMATCH_VIEWS_DIR``), so a fresh clone trains on the views committed
with it; generating into that folder (``--cache-dir`` of its parent) resumes where they end.
A record is one attempt, identified by (task, key, view, attempt): the packed file and the shards
may both hold it, and it is read once.

Each record is one *attempt* at one view slot of one source text::

    {"task": "prompt", "key": <Example.content_hash(task)>, "view": 0, "attempt": 0,
     "status": "accepted" | "rejected", "reason": null | "refusal" | ..., "prompt": ..., "response": ...,
     "meta": {...}, "run": <run-id>, "id": <source example id>}

Crash safety: a record is one ``write`` of one line; a SIGKILL can only leave the *last* line of a
shard torn (no trailing newline, or unparsable). Readers ignore such a line and the writer
truncates it away before appending, so nothing finished is lost and nothing is redone. Files are
owner-only (0600/0700) and lines are encrypted when ``$GUARDMATCH_ENCRYPTION_KEY`` is set (via
:mod:`guardmatch.storage`); every cache registers itself as derived from its input file so that
``guardmatch purge`` finds it.
"""

from __future__ import annotations

import fcntl
import gzip
import io
import json
import os
import re
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Sequence

from guardmatch.augment.base import make_view
from guardmatch.data.example import Example, Task, distinct_texts
from guardmatch.errors import ConfigError, GuardmatchError
from guardmatch.storage.crypto import AtRestCipher, EncryptionKeyError, decode_line, encode_line
from guardmatch.storage.files import cache_root, read_secure_bytes, secure_mkdir, secure_open, write_secure_text
from guardmatch.storage.lineage import register_derived

ACCEPTED = "accepted"
REJECTED = "rejected"
MANIFEST = "manifest.json"
PACKED = "records.jsonl.gz"
SHIPPED_VIEWS_ENV = "GUARDMATCH_VIEWS_DIR"


def views_root(root: str | os.PathLike | None = None) -> Path:
    return cache_root(root) / "views"


def shipped_views_dir() -> Path | None:
    """``$GUARDMATCH_VIEWS_DIR``, else the ``views/`` folder of the source checkout, if it exists."""
    env = os.environ.get(SHIPPED_VIEWS_ENV)
    if env:
        return Path(env).expanduser()
    path = Path(__file__).resolve().parents[3] / "views"
    return path if path.is_dir() else None


def _view_bases(root: str | os.PathLike | None) -> list[Path]:
    bases = [cache_root(root, create=False) / "views"]
    shipped = shipped_views_dir()
    if shipped is not None and shipped.resolve() != bases[0].resolve():
        bases.append(shipped)
    return bases


class MissingViewsError(GuardmatchError, LookupError):
    """Some examples have no accepted view in the cache; the message says how to fill them.

    ``ungenerated``: never attempted (run the command); ``rejected``: every attempt was rejected
    by the filters (retry with a higher ``--max-attempts``, or accept a lower coverage).
    """

    def __init__(self, missing: int, total: int, cache_dir: Path, command: str, rejected: int = 0,
                 max_attempts: int = 2):
        self.missing, self.total, self.cache_dir, self.command = missing, total, cache_dir, command
        self.rejected, self.ungenerated = rejected, missing - rejected
        lines = [f"{missing} of {total} examples have no accepted view in {cache_dir} "
                 f"(coverage {1 - missing / max(total, 1):.1%})."]
        if self.ungenerated:
            lines.append(f"{self.ungenerated} were never generated; generate them with:\n  {command}")
        if rejected:
            lines.append(f"{rejected} had every attempt rejected by the filters; retry them with:\n  "
                         f"{command} --max-attempts {max_attempts + 2}\n"
                         "or accept fewer views (training: views.min_coverage < 1 uses the text itself).")
        super().__init__("\n".join(lines))


class CacheLockedError(GuardmatchError, RuntimeError):
    """Another process is writing to the same cache."""


@dataclass(frozen=True)
class ViewRecord:
    """One parsed cache line."""

    task: Task
    key: str
    view: int
    attempt: int
    status: str
    reason: str | None
    prompt: str | None
    response: str | None
    meta: dict[str, Any]
    run: str
    source_id: str

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "ViewRecord":
        return cls(Task(obj["task"]), obj["key"], int(obj["view"]), int(obj["attempt"]), obj["status"],
                   obj.get("reason"), obj.get("prompt"), obj.get("response"), obj.get("meta") or {},
                   obj.get("run", ""), obj.get("id", ""))

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task.value, "key": self.key, "view": self.view, "attempt": self.attempt,
                "status": self.status, "reason": self.reason, "prompt": self.prompt, "response": self.response,
                "meta": self.meta, "run": self.run, "id": self.source_id}


def _read_shard(path: Path, cipher: AtRestCipher | None) -> tuple[list[ViewRecord], int, int]:
    """Records of one shard, the byte length up to its last complete line, and the bad-line count.

    A last line without its newline is torn (the writer was killed mid-write): it is never parsed.
    A complete line that does not parse is skipped and counted, but kept on disk.
    """
    records: list[ViewRecord] = []
    good_end = 0
    bad = 0
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            if not raw.endswith(b"\n"):  # torn last line
                bad += 1
                break
            good_end += len(raw)
            text = raw.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            try:
                obj = json.loads(decode_line(text, cipher, file=str(path), line_no=n))
                records.append(ViewRecord.from_json(obj))
            except EncryptionKeyError:
                raise
            except Exception:  # noqa: BLE001 - unparsable line: ignored and counted
                bad += 1
    return records, good_end, bad


class ShardWriter:
    """Appends records to this run's shard; holds the cache lock while open."""

    def __init__(self, cache: "ViewCache", run_id: str):
        self.cache = cache
        self.run_id = run_id
        self.path = cache.path / "shards" / f"{run_id}.jsonl"
        secure_mkdir(self.path.parent)
        self._lock_fh = secure_open(cache.path / "lock", "a")
        try:
            fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_fh.close()
            raise CacheLockedError(f"{cache.path} is being written by another `guardmatch augment` run") from None
        cache.repair()
        self._fh = secure_open(self.path, "a")
        self._cipher = AtRestCipher.from_env()
        self.written = 0

    def write(self, record: ViewRecord) -> None:
        line = json.dumps(record.to_json(), ensure_ascii=False)
        self._fh.write(encode_line(line, self._cipher) + "\n")
        self.written += 1
        self.cache._add(record)

    def flush(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self.flush()
            self._fh.close()
        if not self._lock_fh.closed:
            fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_UN)
            self._lock_fh.close()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class ViewCache:
    """Reader (and, through :meth:`writer`, writer) of one augmenter's cache directory."""

    def __init__(self, path: Path, manifest: dict[str, Any]):
        self.path = Path(path)
        self.manifest = manifest
        # (task, key) -> view index -> records (attempt order)
        self._index: dict[tuple[Task, str], dict[int, list[ViewRecord]]] = defaultdict(lambda: defaultdict(list))
        self._seen: set[tuple[Task, str, int, int]] = set()
        self.bad_lines = 0
        self._load()

    # ---- opening ---------------------------------------------------------------------------
    @staticmethod
    def dir_name(augmenter_name: str, fingerprint: str) -> str:
        return f"{augmenter_name}-{fingerprint[:12]}"

    @classmethod
    def create(cls, description: dict[str, Any], fingerprint: str, cache_root: str | os.PathLike | None = None,
               command: str | None = None) -> "ViewCache":
        """Open the cache of this augmenter description, creating directory and manifest if new.

        An existing cache of the same fingerprint in the shipped views folder is continued in place
        (its new shards are packed with ``guardmatch views pack``), so shipped views are never redone."""
        name = cls.dir_name(description["name"], fingerprint)
        path = views_root(cache_root) / name
        if not (path / MANIFEST).is_file():
            path = next((b / name for b in _view_bases(cache_root) if (b / name / MANIFEST).is_file()), path)
        manifest_file = path / MANIFEST
        if manifest_file.is_file():
            manifest = json.loads(read_secure_bytes(manifest_file))
            if manifest.get("fingerprint") != fingerprint:
                raise ValueError(f"{path}: manifest fingerprint {manifest.get('fingerprint')!r} != {fingerprint!r}")
            if command and not manifest.get("command"):
                manifest["command"] = command
            return cls(path, manifest)
        secure_mkdir(path / "shards")
        manifest = {"augmenter": description["name"], "fingerprint": fingerprint, "description": description,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": command}
        cache = cls(path, manifest)
        cache.write_manifest()
        return cache

    @classmethod
    def open(cls, name_or_path: str | os.PathLike, cache_root: str | os.PathLike | None = None,
             fingerprint: str | None = None) -> "ViewCache":
        """Open by directory path, by ``<name>-<fp12>`` directory name, or by augmenter name.

        An augmenter name that matches several fingerprints is ambiguous: pass ``fingerprint`` (a
        prefix is enough) or the directory path. The error lists the candidates.
        """
        path = Path(name_or_path).expanduser()
        if (path / MANIFEST).is_file():
            return cls._from_dir(path)
        bases = _view_bases(cache_root)
        for base in bases:  # the cache root wins over the shipped folder
            if (base / str(name_or_path) / MANIFEST).is_file():
                return cls._from_dir(base / str(name_or_path))
        for base in bases:
            candidates = sorted(p.parent for p in base.glob(f"{name_or_path}-*/{MANIFEST}")) if base.is_dir() else []
            candidates = [p for p in candidates if p.name.rsplit("-", 1)[0] == str(name_or_path)]
            if fingerprint:
                candidates = [p for p in candidates if fingerprint.startswith(p.name.rsplit("-", 1)[1])
                              or p.name.rsplit("-", 1)[1].startswith(fingerprint[:12])]
            if len(candidates) > 1:
                raise ConfigError(
                    f"{len(candidates)} caches of augmenter {str(name_or_path)!r} under {base} "
                    f"({', '.join(p.name for p in candidates)}): pass the directory name or path"
                )
            if candidates:
                return cls._from_dir(candidates[0])
        known = sorted(p.name for base in bases if base.is_dir() for p in base.iterdir() if p.is_dir())
        raise FileNotFoundError(
            f"no view cache {str(name_or_path)!r} under {' or '.join(str(b) for b in bases)}"
            + (f"; caches there: {', '.join(known)}" if known else " (none yet)")
            + ". Create one with `guardmatch augment --augmenter ... --input ...`"
        )

    @classmethod
    def _from_dir(cls, path: Path) -> "ViewCache":
        manifest = json.loads(read_secure_bytes(path / MANIFEST))
        return cls(path, manifest)

    # ---- loading ---------------------------------------------------------------------------
    def shard_paths(self) -> list[Path]:
        return sorted((self.path / "shards").glob("*.jsonl"))

    def _load(self) -> None:
        cipher = None  # decode_line falls back to the env key when a line is encrypted
        packed = self.path / PACKED
        if packed.is_file():
            with gzip.open(packed, "rt", encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if line.strip():
                        try:
                            self._add(ViewRecord.from_json(json.loads(line)))
                        except (ValueError, KeyError) as exc:
                            raise ValueError(f"{packed}, line {n}: not a view record ({exc})") from None
        for shard in self.shard_paths():
            records, _, bad = _read_shard(shard, cipher)
            self.bad_lines += bad
            for rec in records:
                self._add(rec)

    def _add(self, record: ViewRecord) -> None:
        ident = (record.task, record.key, record.view, record.attempt)
        if ident in self._seen:  # already read from the packed file (or another shard)
            return
        self._seen.add(ident)
        self._index[(record.task, record.key)][record.view].append(record)

    def pack(self, prune: bool = True, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write every record to ``records.jsonl.gz`` (sorted, byte-for-byte reproducible), refresh
        the manifest, and with ``prune`` delete the shards it now holds unless a writer is running.

        Packed files are plain (never encrypted): pack only views you mean to share."""
        records = sorted(self.iter_records(), key=lambda r: (r.task.value, r.key, r.view, r.attempt))
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0) as gz:
            for rec in records:
                gz.write((json.dumps(rec.to_json(), ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8"))
        data = buf.getvalue()
        tmp = self.path / (PACKED + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.path / PACKED)
        pruned = 0
        if prune:
            with secure_open(self.path / "lock", "a") as lock:
                try:
                    fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    pass  # a run is writing: its shard stays; the next pack takes it
                else:
                    for shard in self.shard_paths():
                        shard.unlink()
                        pruned += 1
                    fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
        self.write_manifest(packed={"records": len(records), "bytes": len(data),
                                    "packed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, **(extra or {}))
        return {"records": len(records), "bytes": len(data), "shards_pruned": pruned}

    def repair(self) -> int:
        """Truncate torn/unparsable tails of shards (after a kill). Returns bytes removed."""
        removed = 0
        for shard in self.shard_paths():
            _, good_end, bad = _read_shard(shard, None)
            size = shard.stat().st_size
            if good_end < size:
                with open(shard, "r+b") as fh:
                    fh.truncate(good_end)
                removed += size - good_end
        return removed

    def remove_keys(self, task_keys: Iterable[tuple[Task | str, str]], *, dry_run: bool = False) -> int:
        """Delete every record of the texts ``(task, key)`` from the shards and the packed file.

        Files are rewritten atomically with their modes kept; the index and the manifest's counts
        are refreshed. Holds the cache lock (:class:`CacheLockedError` while a run writes, nothing
        removed). Returns how many records go (with ``dry_run``: would go; nothing is written).
        """
        drop = {(Task(t).value, str(k)) for t, k in task_keys}
        cipher = AtRestCipher.from_env()
        removed = 0

        def kept(lines: list[str], where: Path) -> list[str]:
            nonlocal removed
            out = []
            for n, line in enumerate(lines, 1):
                text = line.strip()
                if text:
                    obj = json.loads(decode_line(text, cipher, file=str(where), line_no=n))
                    if (obj.get("task"), obj.get("key")) in drop:
                        removed += 1
                        continue
                out.append(line)
            return out

        if not drop:
            return 0
        with secure_open(self.path / "lock", "a") as lock:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CacheLockedError(f"{self.path} is being written by a `guardmatch augment` run; try again "
                                       "when it has finished (nothing was removed)") from None
            for shard in self.shard_paths():
                with open(shard, encoding="utf-8", errors="surrogateescape") as fh:
                    lines = [ln for ln in fh if ln.endswith("\n")]  # a torn last line is dropped
                left = kept(lines, shard)
                if not dry_run and len(left) != len(lines):
                    tmp = shard.with_name(shard.name + ".remove-tmp")
                    with secure_open(tmp, "w", errors="surrogateescape") as out:
                        out.writelines(left)
                    os.replace(tmp, shard)
            packed = self.path / PACKED
            if packed.is_file():
                with gzip.open(packed, "rt", encoding="utf-8") as fh:
                    lines = [ln if ln.endswith("\n") else ln + "\n" for ln in fh]
                left = kept(lines, packed)
                if not dry_run and len(left) != len(lines):
                    tmp = packed.with_name(PACKED + ".remove-tmp")
                    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as gz:
                        gz.write("".join(left).encode("utf-8"))
                    os.chmod(tmp, packed.stat().st_mode & 0o777)
                    os.replace(tmp, packed)
                    if isinstance(self.manifest.get("packed"), dict):
                        self.manifest["packed"] = {**self.manifest["packed"], "records": len(left),
                                                   "bytes": packed.stat().st_size}
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
        if removed and not dry_run:
            self.reload()
            self.write_manifest()
        return removed

    def reload(self) -> "ViewCache":
        self._index.clear()
        self._seen.clear()
        self.bad_lines = 0
        self._load()
        return self

    def writer(self, run_id: str | None = None) -> ShardWriter:
        run_id = run_id or time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        return ShardWriter(self, run_id)

    # ---- slots -----------------------------------------------------------------------------
    def records(self, task: Task | str, key: str) -> dict[int, list[ViewRecord]]:
        return self._index.get((Task(task), key), {})

    def slot_state(self, task: Task | str, key: str, view: int) -> tuple[bool, int]:
        """(has an accepted record, number of attempts made) for one view slot."""
        recs = self.records(task, key).get(view, [])
        return any(r.status == ACCEPTED for r in recs), len(recs)

    def iter_records(self, task: Task | str | None = None) -> Iterator[ViewRecord]:
        for (t, _), views in self._index.items():
            if task is not None and t is not Task(task):
                continue
            for recs in views.values():
                yield from recs

    # ---- reader API (training) ---------------------------------------------------------------
    def accepted(self, example: Example, task: Task | str, max_views: int | None = None) -> list[Example]:
        """Accepted views of one example, as Example copies, in view-slot order."""
        task = Task(task)
        out: list[Example] = []
        for view in sorted(self.records(task, example.content_hash(task))):
            for rec in self.records(task, example.content_hash(task))[view]:
                if rec.status == ACCEPTED:
                    meta = {"augmenter": self.manifest.get("augmenter"), "view_index": rec.view,
                            "augment_fingerprint": self.manifest.get("fingerprint", "")[:12], **rec.meta}
                    out.append(make_view(example, task, rec.prompt, rec.response, meta))
                    break
            if max_views is not None and len(out) >= max_views:
                break
        return out

    def views_for(self, examples: Sequence[Example], task: Task | str, min_coverage: float = 1.0,
                  max_views: int | None = None,
                  on_missing: Literal["identity", "empty"] = "identity") -> list[list[Example]]:
        """Accepted views of every example (``out[i]`` belongs to ``examples[i]``).

        Raises :class:`MissingViewsError` if the share of examples with at least one view is below
        ``min_coverage``. Below full coverage, examples without views get ``[example]`` itself
        (``on_missing="identity"``, marked ``metadata['missing_view']=True``) or ``[]``.
        """
        task = Task(task)
        out = [self.accepted(ex, task, max_views) for ex in examples]
        missing = sum(1 for views in out if not views)
        if examples and (len(examples) - missing) / len(examples) < min_coverage:
            tried = sum(1 for ex, views in zip(examples, out) if not views and self.records(task, ex.content_hash(task)))
            attempts = max((len(r) for ex, views in zip(examples, out) if not views
                            for r in self.records(task, ex.content_hash(task)).values()), default=2)
            raise MissingViewsError(missing, len(examples), self.path, self.fill_command(task), rejected=tried,
                                    max_attempts=attempts)
        if missing and on_missing == "identity":
            for i, views in enumerate(out):
                if not views:
                    meta = {**examples[i].metadata, "augmenter": "identity", "missing_view": True}
                    out[i] = [Example(examples[i].id, examples[i].prompt, examples[i].response, examples[i].label,
                                      examples[i].source, meta)]
        return out

    def coverage(self, examples: Sequence[Example], task: Task | str) -> float:
        """Share of ``examples`` with at least one accepted view."""
        if not examples:
            return 1.0
        task = Task(task)
        have = sum(1 for ex in examples if self.has_accepted(task, ex.content_hash(task)))
        return have / len(examples)

    def has_accepted(self, task: Task, key: str) -> bool:
        """Whether the text with content hash ``key`` holds at least one accepted view."""
        return any(r.status == ACCEPTED for recs in self.records(task, key).values() for r in recs)

    def fill_command(self, task: Task | str) -> str:
        cmd = self.manifest.get("command")
        if cmd:  # the command that made this cache, without its subset selection
            return re.sub(r" --sample \S+| --sample-seed \S+", "", cmd)
        desc = self.manifest.get("description", {})
        return (f"guardmatch augment --augmenter {desc.get('name', self.manifest.get('augmenter'))} "
                f"--task {Task(task).value} --input <the same input> --cache-dir {self.path.parent.parent}")

    # ---- statistics ------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counts per task: source texts, accepted views, attempts, rejections by reason."""
        out: dict[str, Any] = {}
        for task in Task:
            texts = accepted = attempts = 0
            reasons: Counter = Counter()
            for (t, _), views in self._index.items():
                if t is not task:
                    continue
                texts += 1
                for recs in views.values():
                    attempts += len(recs)
                    accepted += sum(r.status == ACCEPTED for r in recs)
                    reasons.update(r.reason or "unknown" for r in recs if r.status == REJECTED)
            if texts:
                out[task.value] = {"texts": texts, "accepted_views": accepted, "attempts": attempts,
                                   "rejected": dict(sorted(reasons.items())),
                                   "rejection_rate": round(1 - accepted / attempts, 4) if attempts else 0.0}
        return out

    def write_manifest(self, **extra: Any) -> None:
        """Rewrite ``manifest.json`` atomically with fresh counts (and ``extra`` fields)."""
        self.manifest.update(extra)
        self.manifest["counts"] = self.stats()
        self.manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        write_secure_text(self.path / MANIFEST, json.dumps(self.manifest, indent=2, ensure_ascii=False))

    def register_source(self, source: str | os.PathLike) -> None:
        """Record this cache as derived from ``source`` (a pool file) for ``guardmatch purge``."""
        try:
            register_derived(source, self.path, kind="view-cache")
        except Exception:  # noqa: BLE001 - bookkeeping must never break generation
            pass


def list_caches(cache_root: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Every view cache under the root, then in the shipped views folder, with its manifest summary."""
    out = []
    for base in _view_bases(cache_root):
        for manifest in sorted(base.glob(f"*/{MANIFEST}")):
            data = json.loads(read_secure_bytes(manifest))
            out.append({"dir": str(manifest.parent), "augmenter": data.get("augmenter"),
                        "fingerprint": data.get("fingerprint", "")[:12], "counts": data.get("counts", {}),
                        "updated": data.get("updated"), "shipped": base != _view_bases(cache_root)[0]})
    return out


def unique_by_key(examples: Iterable[Example], task: Task | str) -> list[Example]:
    """First example of each distinct content hash (views are shared by identical texts)."""
    return distinct_texts(examples, task)
