"""Exact and near-duplicate removal with a persisted, resumable state (SQLite, no pickle).

* **Exact**: a 16-byte BLAKE2b of the normalized text (lower-cased words joined by one space, so
  case, punctuation and whitespace differences count as duplicates).
* **Near**: MinHash signatures from ``datasketch`` over word ``shingle_words``-grams, banded as
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
from functools import cached_property

import numpy as np

from guardmatch.ingest.config import DedupConfig

_WORD = re.compile(r"\w+", re.UNICODE)


def normalize(text: str) -> str:
    """Lower-cased words joined by single spaces (punctuation and spacing ignored)."""
    return " ".join(_WORD.findall(text.lower()))


def shingles(text: str, n: int) -> list[bytes]:
    """Word n-grams of the normalized text (the whole text when shorter than ``n`` words)."""
    words = _WORD.findall(text.lower())
    if len(words) <= n:
        return [" ".join(words).encode("utf-8") or text.encode("utf-8")]
    return [" ".join(words[i:i + n]).encode("utf-8") for i in range(len(words) - n + 1)]


class DedupIndex:
    """``check_and_add(namespace, text)`` -> ``None`` (new), ``"exact"`` or ``"near"``."""

    def __init__(self, conn: sqlite3.Connection, config: DedupConfig | None = None):
        self.conn = conn
        self.config = config or DedupConfig()
        conn.execute("CREATE TABLE IF NOT EXISTS dedup_exact (h BLOB PRIMARY KEY) WITHOUT ROWID")
        conn.execute("CREATE TABLE IF NOT EXISTS dedup_bands (k BLOB PRIMARY KEY) WITHOUT ROWID")

    @cached_property
    def _lsh(self) -> tuple[list[tuple[int, int]], object]:
        from datasketch import MinHash, MinHashLSH

        lsh = MinHashLSH(threshold=self.config.threshold, num_perm=self.config.num_perm)
        template = MinHash(num_perm=self.config.num_perm, seed=1)
        return list(lsh.hashranges), template

    @property
    def bands(self) -> tuple[int, int]:
        """``(b, r)``: number of bands and rows per band."""
        ranges, _ = self._lsh
        return len(ranges), ranges[0][1] - ranges[0][0]

    def signature(self, text: str) -> np.ndarray:
        """The MinHash signature (``num_perm`` uint32 values) of ``text``."""
        from datasketch import MinHash

        _, template = self._lsh
        m = MinHash(num_perm=self.config.num_perm, seed=1, permutations=template.permutations, scheme=template.scheme)
        m.update_batch(shingles(text, self.config.shingle_words))
        return m.hashvalues

    def band_keys(self, namespace: str, text: str) -> list[bytes]:
        ranges, _ = self._lsh
        sig = self.signature(text)
        ns = namespace.encode("utf-8")
        return [
            hashlib.blake2b(ns + bytes([i]) + sig[a:b].tobytes(), digest_size=8).digest()
            for i, (a, b) in enumerate(ranges)
        ]

    def check_and_add(self, namespace: str, text: str) -> str | None:
        """Record ``text`` unless it duplicates an earlier one in ``namespace``; say which kind."""
        if self.config.exact:
            h = hashlib.blake2b(namespace.encode("utf-8") + b"\0" + normalize(text).encode("utf-8"), digest_size=16).digest()
            cur = self.conn.execute("INSERT OR IGNORE INTO dedup_exact VALUES (?)", (h,))
            if cur.rowcount == 0:
                return "exact"
        if self.config.near:
            keys = self.band_keys(namespace, text)
            hit = self.conn.execute(
                f"SELECT 1 FROM dedup_bands WHERE k IN ({','.join('?' * len(keys))}) LIMIT 1", keys
            ).fetchone()
            if hit:
                return "near"
            self.conn.executemany("INSERT OR IGNORE INTO dedup_bands VALUES (?)", [(k,) for k in keys])
        return None
