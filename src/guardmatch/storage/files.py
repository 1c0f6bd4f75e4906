"""Owner-only files: directories created 0700, files 0600 whatever the umask, atomic writes.

The cache root (``$GUARDMATCH_CACHE_DIR`` or ``~/.cache/guardmatch``) is computed here and only here.
"""

from __future__ import annotations

import contextlib
import os
import stat
import uuid
from pathlib import Path
from typing import IO, Any, Iterator

from guardmatch.storage.crypto import BLOB_MAGIC, KEY_ENV, AtRestCipher, EncryptionKeyError

try:  # POSIX advisory locks for concurrent appends; absent on Windows
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

CACHE_ENV = "GUARDMATCH_CACHE_DIR"
FILE_MODE = 0o600
DIR_MODE = 0o700


def cache_root(path: str | os.PathLike | None = None, create: bool = True) -> Path:
    """``path``, else ``$GUARDMATCH_CACHE_DIR``, else ``~/.cache/guardmatch`` (created 0700 unless ``create=False``)."""
    env = os.environ.get(CACHE_ENV)
    if path is not None:
        root = Path(path).expanduser()
    else:
        root = Path(env).expanduser() if env else Path.home() / ".cache" / "guardmatch"
    return secure_mkdir(root) if create else root


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


def write_secure_bytes(path: str | os.PathLike, data: bytes, cipher: AtRestCipher | None = None) -> Path:
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


def write_secure_text(path: str | os.PathLike, text: str, cipher: AtRestCipher | None = None) -> Path:
    """:func:`write_secure_bytes` for UTF-8 text."""
    return write_secure_bytes(path, text.encode("utf-8"), cipher=cipher)


def read_secure_bytes(path: str | os.PathLike, cipher: AtRestCipher | None = None) -> bytes:
    """Read a file written by :func:`write_secure_bytes`, decrypting it if it is encrypted."""
    data = Path(path).read_bytes()
    if not data.startswith(BLOB_MAGIC):
        return data
    cipher = cipher or AtRestCipher.from_env()
    if cipher is None:
        raise EncryptionKeyError(f"{path}: file is encrypted; set {KEY_ENV} to the key it was written with")
    return cipher.decrypt_blob(data, where=str(path))



def file_mode(path: str | os.PathLike) -> int:
    """The permission bits of ``path`` (e.g. ``0o600``), for checks and tests."""
    return stat.S_IMODE(os.stat(path).st_mode)


@contextlib.contextmanager
def locked_append(path: str | os.PathLike) -> Iterator[IO]:
    """A 0600 file opened for appending under an exclusive advisory lock (POSIX)."""
    with secure_open(path, "a") as fh:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield fh
            fh.flush()
        finally:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
