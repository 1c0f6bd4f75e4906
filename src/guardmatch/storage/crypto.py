"""Optional encryption at rest: Fernet (AES-128-CBC + HMAC-SHA256, authenticated) of lines and blobs.

Keys come from ``$GUARDMATCH_ENCRYPTION_KEY`` (comma-separated for rotation: the first encrypts,
all decrypt). An encrypted JSONL line is ``gmenc1:<token>``; an encrypted blob starts with
``GMENC1\\n``. A missing or wrong key is an :class:`EncryptionKeyError` naming file and line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

from guardmatch.errors import GuardmatchError

KEY_ENV = "GUARDMATCH_ENCRYPTION_KEY"
LINE_PREFIX = "gmenc1:"
BLOB_MAGIC = b"GMENC1\n"


class EncryptionKeyError(GuardmatchError, RuntimeError):
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
        if not fernets or first is None:  # first is set with the first valid key
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
