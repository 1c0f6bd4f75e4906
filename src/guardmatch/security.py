"""At-rest protection for files that hold harmful text (pools, caches, review stores, predictions).

Every guardmatch artifact that can contain prompts or responses goes through this module, so that
the safe path is the easy one. The API is small:

Files created owner-only, whatever the umask
    ``secure_mkdir(path)``                 directories we create get 0700 (existing ones are left).
    ``secure_open(path, mode)``            like ``open``; a file it creates or writes is 0600.
    ``write_secure_bytes(path, data)``     atomic (tmp + rename) 0600 write; ``write_secure_text`` too;
                                           with ``cipher=`` the whole blob is encrypted.
    ``read_secure_bytes(path)``            reads it back, decrypting transparently.

Optional encryption at rest (``cryptography``'s Fernet: AES-128-CBC + HMAC-SHA256, authenticated)
    ``AtRestCipher.from_env()``            key(s) from ``$GUARDMATCH_ENCRYPTION_KEY`` (comma-separated
                                           for rotation: the first encrypts, all decrypt); None if unset.
    ``generate_key()``                     a new key to put in that variable.
    ``cipher.encrypt_line(s)`` / ``decrypt_line(s)``  one JSONL line <-> ``gmenc1:<token>``.
    ``encode_line(s, cipher)`` / ``decode_line(s, file=, line=)``  what JSONL writers/readers call:
                                           plaintext stays plaintext, ``gmenc1:`` lines are decrypted
                                           with the env key, a missing or wrong key is a clear
                                           :class:`EncryptionKeyError` naming file and line.
    ``open_jsonl_writer(path, cipher=, append=)`` / ``iter_jsonl(path)``  the JSONL pair built on them.

Audit log of exports (``<cache root>/audit.jsonl``, plaintext: it holds no user text)
    ``audit_log(action, what, rows, **details)``  appends ``{who, when, action, what, rows, ...}``;
                                           who = ``$GUARDMATCH_AUDIT_USER`` or the OS user,
                                           when = UTC ISO-8601.  ``read_audit_log()`` reads it.

Derived-data registry (``<cache root>/derived.sqlite``) so ``guardmatch purge`` finds everything
    ``register_derived(source, path, kind)``  call when writing an artifact computed from a pool
                                           (view cache, embeddings, predictions, review DB ...).
    ``pool_fingerprint(path)``             stable id of a pool (its manifest's ``pool_id`` survives
                                           moves; otherwise the resolved path).
    ``derived_from(source)``               registered artifacts, transitively.
    ``purge(pool, dry_run=False)``         deletes the pool, its sidecars and every registered
                                           derivative it owns alone; from a view cache shared with
                                           other sources only the records of the pool's texts go;
                                           returns a :class:`PurgeReport`; audited.

Cache root: ``$GUARDMATCH_CACHE_DIR`` or ``~/.cache/guardmatch`` (``cache_root()``).

Not covered (say so to users): purge unlinks files but cannot scrub disk blocks, snapshots or
backups (encrypt at rest and destroy the key for that: crypto-shredding); SQLite databases (review
store, ingest state) are 0600 but not encrypted; data in memory, in logs of other tools, or copied
elsewhere by the user is outside guardmatch's reach; file modes do not protect against root.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as _dt
import getpass
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import stat
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator

try:  # POSIX advisory locks for concurrent appends; absent on Windows
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

KEY_ENV = "GUARDMATCH_ENCRYPTION_KEY"
CACHE_ENV = "GUARDMATCH_CACHE_DIR"
AUDIT_USER_ENV = "GUARDMATCH_AUDIT_USER"
LINE_PREFIX = "gmenc1:"
BLOB_MAGIC = b"GMENC1\n"
FILE_MODE = 0o600
DIR_MODE = 0o700

__all__ = [
    "AtRestCipher",
    "EncryptionKeyError",
    "PurgeReport",
    "audit_log",
    "cache_root",
    "decode_line",
    "derived_from",
    "encode_line",
    "generate_key",
    "is_encrypted_line",
    "iter_jsonl",
    "open_jsonl_writer",
    "pool_fingerprint",
    "purge",
    "read_audit_log",
    "read_secure_bytes",
    "register_derived",
    "secure_mkdir",
    "secure_open",
    "write_secure_bytes",
    "write_secure_text",
]


# --------------------------------------------------------------------------------------------
# owner-only files
# --------------------------------------------------------------------------------------------


def cache_root() -> Path:
    """``$GUARDMATCH_CACHE_DIR`` or ``~/.cache/guardmatch``, created 0700."""
    env = os.environ.get(CACHE_ENV)
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "guardmatch"
    return secure_mkdir(root)


def secure_mkdir(path: str | os.PathLike) -> Path:
    """Create ``path`` and missing parents; the directories *created here* get mode 0700.

    Existing directories keep their mode (we never chmod ``/tmp`` or a user's home).
    """
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(d, DIR_MODE)  # mkdir's mode is masked by the umask
    return path


_MODE_FLAGS = {
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
    "r": os.O_RDONLY,
}


def secure_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8", **kwargs: Any) -> IO:
    """``open()`` that creates files 0600 (and fixes the mode of a file it writes) regardless of umask.

    Modes: ``r w a x`` with optional ``b`` and ``+``. Parent directories are created 0700.
    """
    base = mode.replace("b", "").replace("t", "").replace("+", "")
    if base not in _MODE_FLAGS:
        raise ValueError(f"unsupported mode {mode!r}")
    flags = _MODE_FLAGS[base]
    if "+" in mode:
        flags = (flags & ~os.O_WRONLY) | os.O_RDWR
    flags |= getattr(os, "O_CLOEXEC", 0)
    path = Path(path)
    if base != "r":
        secure_mkdir(path.parent)
    fd = os.open(path, flags, FILE_MODE)
    try:
        if base != "r":
            os.fchmod(fd, FILE_MODE)
        if "b" in mode:
            return os.fdopen(fd, mode, **kwargs)
        return os.fdopen(fd, mode, encoding=encoding, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def write_secure_bytes(path: str | os.PathLike, data: bytes, cipher: "AtRestCipher | None" = None) -> Path:
    """Atomically write ``data`` to ``path`` as a 0600 file; with ``cipher`` the blob is encrypted."""
    path = Path(path)
    if cipher is not None:
        data = cipher.encrypt_blob(data)
    secure_mkdir(path.parent)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with secure_open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_secure_text(path: str | os.PathLike, text: str, cipher: "AtRestCipher | None" = None) -> Path:
    """:func:`write_secure_bytes` for UTF-8 text."""
    return write_secure_bytes(path, text.encode("utf-8"), cipher=cipher)


def read_secure_bytes(path: str | os.PathLike, cipher: "AtRestCipher | None" = None) -> bytes:
    """Read a file written by :func:`write_secure_bytes`, decrypting it if it is encrypted."""
    data = Path(path).read_bytes()
    if not data.startswith(BLOB_MAGIC):
        return data
    cipher = cipher or AtRestCipher.from_env()
    if cipher is None:
        raise EncryptionKeyError(f"{path}: file is encrypted; set {KEY_ENV} to the key it was written with")
    return cipher.decrypt_blob(data, where=str(path))


# --------------------------------------------------------------------------------------------
# encryption at rest
# --------------------------------------------------------------------------------------------


class EncryptionKeyError(RuntimeError):
    """Encrypted data without a key, with the wrong key, or a malformed key."""


def generate_key() -> str:
    """A new random key (url-safe base64 of 32 bytes) for ``$GUARDMATCH_ENCRYPTION_KEY``."""
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode("ascii")


class AtRestCipher:
    """Authenticated symmetric encryption (Fernet, via ``cryptography``) of lines and blobs.

    Several keys enable rotation: the first encrypts, any of them decrypts.
    """

    def __init__(self, keys: str | bytes | list[str | bytes]):
        try:
            from cryptography.fernet import Fernet, MultiFernet
        except ImportError as exc:  # pragma: no cover - cryptography is a core dependency
            raise EncryptionKeyError("encryption at rest needs the 'cryptography' package") from exc
        if isinstance(keys, (str, bytes)):
            keys = [k for k in (keys.split(",") if isinstance(keys, str) else [keys])]
        fernets = []
        first: bytes | None = None
        for i, key in enumerate(k.strip() if isinstance(k, str) else k for k in keys):
            if not key:
                continue
            try:
                fernets.append(Fernet(key))
                first = first or _as_bytes(key)
            except (ValueError, binascii.Error) as exc:
                raise EncryptionKeyError(
                    f"{KEY_ENV} key #{i + 1} is not a valid key (32 url-safe base64-encoded bytes); "
                    "make one with `guardmatch keygen`"
                ) from exc
        if not fernets:
            raise EncryptionKeyError(f"no key given ({KEY_ENV} is empty)")
        self._fernet = MultiFernet(fernets)
        #: short public id of the encrypting key (recorded in manifests; reveals nothing usable)
        self.key_id = hashlib.sha256(b"guardmatch-key-id:" + base64.urlsafe_b64decode(first)).hexdigest()[:12]

    @classmethod
    def from_env(cls, env: str = KEY_ENV) -> "AtRestCipher | None":
        """The cipher for ``$GUARDMATCH_ENCRYPTION_KEY``; None when unset or empty."""
        value = os.environ.get(env, "").strip()
        return cls(value) if value else None

    def encrypt(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def decrypt(self, token: bytes, where: str = "") -> bytes:
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(token)
        except InvalidToken as exc:
            at = f"{where}: " if where else ""
            raise EncryptionKeyError(
                f"{at}cannot decrypt: wrong {KEY_ENV} for this data, or the data was altered"
            ) from exc

    def encrypt_line(self, line: str) -> str:
        """One text line (no newline) -> ``gmenc1:<token>`` (still a single line)."""
        return LINE_PREFIX + self.encrypt(line.encode("utf-8")).decode("ascii")

    def decrypt_line(self, line: str, where: str = "") -> str:
        line = line.strip()
        if not line.startswith(LINE_PREFIX):
            return line
        return self.decrypt(line[len(LINE_PREFIX):].encode("ascii"), where=where).decode("utf-8")

    def encrypt_blob(self, data: bytes) -> bytes:
        return BLOB_MAGIC + self.encrypt(data)

    def decrypt_blob(self, data: bytes, where: str = "") -> bytes:
        if not data.startswith(BLOB_MAGIC):
            return data
        return self.decrypt(data[len(BLOB_MAGIC):], where=where)


def _as_bytes(key: str | bytes) -> bytes:
    return key.encode("ascii") if isinstance(key, str) else key


def is_encrypted_line(line: str | bytes) -> bool:
    """True for a line written by :meth:`AtRestCipher.encrypt_line`."""
    if isinstance(line, bytes):
        return line.lstrip().startswith(LINE_PREFIX.encode("ascii"))
    return line.lstrip().startswith(LINE_PREFIX)


def encode_line(line: str, cipher: AtRestCipher | None) -> str:
    """What a JSONL writer stores for ``line``: itself, or its encrypted form when ``cipher`` is set."""
    return cipher.encrypt_line(line) if cipher is not None else line


_ENV_CIPHER: dict[str, AtRestCipher | None] = {}


def _env_cipher() -> AtRestCipher | None:
    value = os.environ.get(KEY_ENV, "")
    if value not in _ENV_CIPHER:
        _ENV_CIPHER.clear()
        _ENV_CIPHER[value] = AtRestCipher.from_env()
    return _ENV_CIPHER[value]


def decode_line(line: str, cipher: AtRestCipher | None = None, file: str = "", line_no: int | None = None) -> str:
    """What a JSONL reader parses: plaintext as is, ``gmenc1:`` lines decrypted (``cipher`` or env key).

    Raises :class:`EncryptionKeyError` naming ``file`` and ``line_no`` if the key is missing or wrong.
    """
    if not is_encrypted_line(line):
        return line
    where = f"{file}, line {line_no}" if line_no is not None else file
    cipher = cipher or _env_cipher()
    if cipher is None:
        raise EncryptionKeyError(f"{where}: line is encrypted; set {KEY_ENV} to the key it was written with")
    return cipher.decrypt_line(line, where=where)


class JsonlWriter:
    """Writes one JSON object (or pre-serialized line) per line, encrypted when a cipher is set."""

    def __init__(self, path: str | os.PathLike, cipher: AtRestCipher | None = None, append: bool = False):
        self.path = Path(path)
        self.cipher = cipher
        self._fh = secure_open(self.path, "a" if append else "w")
        self.rows = 0

    def write(self, obj: Any) -> None:
        self.write_line(json.dumps(obj, ensure_ascii=False))

    def write_line(self, line: str) -> None:
        self._fh.write(encode_line(line, self.cipher) + "\n")
        self.rows += 1

    def flush(self, fsync: bool = False) -> None:
        self._fh.flush()
        if fsync:
            os.fsync(self._fh.fileno())

    def tell(self) -> int:
        return self._fh.tell()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_jsonl_writer(path: str | os.PathLike, cipher: AtRestCipher | None = None, append: bool = False) -> JsonlWriter:
    """A 0600 JSONL writer; ``cipher=AtRestCipher.from_env()`` to follow the user's setting."""
    return JsonlWriter(path, cipher=cipher, append=append)


def iter_jsonl(path: str | os.PathLike, cipher: AtRestCipher | None = None) -> Iterator[dict]:
    """Parsed objects of a (possibly encrypted) JSONL file; blank lines skipped."""
    with open(path, encoding="utf-8") as fh:
        for i, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            yield json.loads(decode_line(raw, cipher, file=str(path), line_no=i))


# --------------------------------------------------------------------------------------------
# audit log
# --------------------------------------------------------------------------------------------


def _who() -> str:
    env = os.environ.get(AUDIT_USER_ENV)
    if env:
        return env
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers)
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@contextlib.contextmanager
def _locked_append(path: Path) -> Iterator[IO]:
    with secure_open(path, "a") as fh:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield fh
            fh.flush()
        finally:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def audit_log(action: str, what: str | os.PathLike, rows: int | None, path: str | os.PathLike | None = None, **details: Any) -> dict:
    """Append one record ``{who, when, action, what, rows, host, pid, **details}``; returns it.

    ``action``: e.g. ``export``, ``ingest``, ``purge``; ``what``: the file or dataset concerned.
    ``path`` overrides the log file (default ``<cache root>/audit.jsonl``).
    """
    record = {
        "who": _who(),
        "when": _now(),
        "action": action,
        "what": str(what),
        "rows": rows,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        **details,
    }
    log = Path(path) if path is not None else cache_root() / "audit.jsonl"
    with _locked_append(log) as fh:
        fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    return record


def read_audit_log(path: str | os.PathLike | None = None) -> list[dict]:
    """All records of the audit log (oldest first); empty if there is none yet."""
    log = Path(path) if path is not None else cache_root() / "audit.jsonl"
    if not log.exists():
        return []
    out = []
    with open(log, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(json.loads(line))
    return out


# --------------------------------------------------------------------------------------------
# derived-data registry and purge
# --------------------------------------------------------------------------------------------

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
            "INSERT OR REPLACE INTO derived VALUES (?, ?, ?, ?, ?, ?)", (fp, src, dst, kind, _now(), _who())
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
        raise RuntimeError(f"{path} is being written by a `guardmatch augment` run; purge again "
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


def file_mode(path: str | os.PathLike) -> int:
    """The permission bits of ``path`` (e.g. ``0o600``), for checks and tests."""
    return stat.S_IMODE(os.stat(path).st_mode)
