"""Exact and near-duplicate removal with a persisted, resumable state (SQLite, no pickle).

* **Exact**: a 16-byte BLAKE2b of the normalized text (lower-cased words joined by one space, so
  case, punctuation and whitespace differences count as duplicates).
* **Near**: MinHash signatures from ``datasketch`` over word ``shingle_words``-grams (hashed with
  numpy from per-word CRC32s, :func:`shingle_hashes`), banded as
  ``datasketch.MinHashLSH`` would for ``threshold`` (its ``b`` x ``r`` choice); each band is
  stored as an 8-byte BLAKE2b key. A text whose band key collides with an earlier one is a near
  duplicate (the standard LSH dedup rule, as in large pre-training pipelines: no pairwise check,
  so a few pairs just under the threshold are also dropped).

Both tables live in the caller's SQLite connection, inside the ingest checkpoint transaction: a
killed run rolls back to the last checkpoint together with the pool file. Memory stays bounded
(SQLite pages, not a Python set); only hashes are stored, never text.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import zlib
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING

import numpy as np

from guardmatch.ingest.config import DedupConfig

if TYPE_CHECKING:
    from datasketch import MinHash

_WORD = re.compile(r"\w+", re.UNICODE)


def normalize(text: str) -> str:
    """Lower-cased words joined by single spaces (punctuation and spacing ignored)."""
    return " ".join(_WORD.findall(text.lower()))


_MIX = (np.uint64(0x9E3779B1), np.uint64(0x85EBCA77), np.uint64(0xC2B2AE3D), np.uint64(0x27D4EB2F))


@lru_cache(maxsize=1 << 20)
def _word_hash(word: str) -> int:
    return zlib.crc32(word.encode("utf-8"))


def shingle_hashes(text: str, n: int, words: list[str] | None = None) -> list[int]:
    """32-bit hashes of the word n-grams, computed from per-word CRC32s with numpy.

    Equivalent in role to hashing each n-gram string (what datasketch does with SHA-1 per
    shingle), several times faster: ``h = sum_k crc32(word_{i+k}) * m_k`` (mod 2^32), m_k odd constants.
    """
    if words is None:
        words = _WORD.findall(text.lower())
    if not words:
        return [zlib.crc32(text.encode("utf-8"))]
    w = np.fromiter(map(_word_hash, words), dtype=np.uint64, count=len(words))
    if len(w) <= n:
        mult = np.array([_MIX[j % len(_MIX)] for j in range(len(w))], dtype=np.uint64)
        return [int(np.sum(w * mult) & np.uint64(0xFFFFFFFF))]
    k = len(w) - n + 1
    h = np.zeros(k, dtype=np.uint64)
    for j in range(n):
        h += w[j:j + k] * _MIX[j % len(_MIX)]
    return (h & np.uint64(0xFFFFFFFF)).tolist()


class DedupIndex:
    """``check_and_add(namespace, text)`` -> ``None`` (new), ``"exact"`` or ``"near"``."""

    def __init__(self, conn: sqlite3.Connection, config: DedupConfig | None = None):
        self.conn = conn
        self.config = config or DedupConfig()
        conn.execute("CREATE TABLE IF NOT EXISTS dedup_exact (h BLOB PRIMARY KEY) WITHOUT ROWID")
        conn.execute("CREATE TABLE IF NOT EXISTS dedup_bands (k BLOB PRIMARY KEY) WITHOUT ROWID")

    @cached_property
    def _lsh(self) -> tuple[list[tuple[int, int]], MinHash]:
        from datasketch import MinHash, MinHashLSH

        lsh = MinHashLSH(threshold=self.config.threshold, num_perm=self.config.num_perm)
        template = MinHash(num_perm=self.config.num_perm, seed=1, hashfunc=int)
        return list(lsh.hashranges), template

    @property
    def bands(self) -> tuple[int, int]:
        """``(b, r)``: number of bands and rows per band."""
        ranges, _ = self._lsh
        return len(ranges), ranges[0][1] - ranges[0][0]

    def signature(self, text: str, words: list[str] | None = None) -> np.ndarray:
        """The MinHash signature (``num_perm`` uint32 values) of ``text``."""
        from datasketch import MinHash

        _, template = self._lsh
        # the shingles arrive already hashed (shingle_hashes), so datasketch's hashfunc is int()
        m = MinHash(num_perm=self.config.num_perm, seed=1, hashfunc=int, permutations=template.permutations,
                    scheme=template.scheme)
        m.update_batch(shingle_hashes(text, self.config.shingle_words, words))
        return m.hashvalues

    def band_keys(self, namespace: str, text: str, words: list[str] | None = None) -> list[bytes]:
        ranges, _ = self._lsh
        sig = self.signature(text, words)
        ns = namespace.encode("utf-8")
        return [
            hashlib.blake2b(ns + bytes([i]) + sig[a:b].tobytes(), digest_size=8).digest()
            for i, (a, b) in enumerate(ranges)
        ]

    def check_and_add(self, namespace: str, text: str) -> str | None:
        """Record ``text`` unless it duplicates an earlier one in ``namespace``; say which kind."""
        words = _WORD.findall(text.lower())
        if self.config.exact:
            norm = " ".join(words)
            h = hashlib.blake2b(namespace.encode("utf-8") + b"\0" + norm.encode("utf-8"), digest_size=16).digest()
            cur = self.conn.execute("INSERT OR IGNORE INTO dedup_exact VALUES (?)", (h,))
            if cur.rowcount == 0:
                return "exact"
        if self.config.near:
            keys = self.band_keys(namespace, text, words)
            hit = self.conn.execute(
                f"SELECT 1 FROM dedup_bands WHERE k IN ({','.join('?' * len(keys))}) LIMIT 1", keys
            ).fetchone()
            if hit:
                return "near"
            self.conn.executemany("INSERT OR IGNORE INTO dedup_bands VALUES (?)", [(k,) for k in keys])
        return None
