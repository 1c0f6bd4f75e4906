"""Infinite, step-addressed batch streams for the labeled set and the unlabeled pool.

The batch at global step ``s`` is a pure function of ``(seed, s)``: epochs are seeded
permutations, and a global batch of ``B * world_size`` items is sliced per rank. So a resumed run
needs no loader state at all, and every process agrees on which examples everyone sees, which is
what keeps per-example algorithm state identical across ranks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from guardmatch.data.example import Example


@dataclass(frozen=True)
class StepSampler:
    """Indices into a dataset of ``size`` items for each step, epoch-shuffled with ``seed``."""

    size: int
    batch_size: int
    seed: int
    stream: int = 0  # distinguishes the labeled and unlabeled streams drawn with one seed
    world_size: int = 1
    rank: int = 0
    lengths: tuple[int, ...] | None = None  # per-item text lengths, for length bucketing
    bucket: int = 0  # sort each window of this many global batches by length (0: plain shuffle)

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise ValueError("cannot sample batches from an empty set")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} outside world size {self.world_size}")
        if self.bucket and (self.lengths is None or len(self.lengths) != self.size):
            raise ValueError("length bucketing needs one length per item")

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def _permutation(self, epoch: int) -> np.ndarray:
        """The epoch's order. With ``bucket``, each window of ``bucket`` global batches of the
        shuffled order is sorted by length and cut into batches, and the batches are shuffled
        again: every item still comes once an epoch, and a batch holds texts of similar length, so
        dynamic padding pads little."""
        rng = np.random.default_rng([self.seed, self.stream, epoch])
        perm = rng.permutation(self.size)
        if not self.bucket:
            return perm
        g = self.global_batch_size
        lengths = np.asarray(self.lengths)
        window = self.bucket * g
        batches = []
        for start in range(0, self.size, window):
            chunk = perm[start : start + window]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches += [chunk[i : i + g] for i in range(0, len(chunk), g)]
        order = rng.permutation(len(batches))
        return np.concatenate([batches[i] for i in order])

    def global_indices(self, step: int) -> np.ndarray:
        """Indices of the whole (all ranks) batch at ``step``."""
        g = self.global_batch_size
        start = step * g
        out = np.empty(g, dtype=np.int64)
        filled = 0
        while filled < g:
            pos = start + filled
            epoch, offset = divmod(pos, self.size)
            take = min(g - filled, self.size - offset)
            out[filled : filled + take] = self._permutation(epoch)[offset : offset + take]
            filled += take
        return out

    def indices(self, step: int) -> np.ndarray:
        """This rank's slice of the global batch at ``step``."""
        b = self.batch_size
        return self.global_indices(step)[self.rank * b : (self.rank + 1) * b]

    def steps_per_epoch(self) -> int:
        return max(1, -(-self.size // self.global_batch_size))


def choose_views(
    views: Sequence[Sequence[Example]], indices: np.ndarray, seed: int, step: int
) -> list[Example]:
    """One cached strong view per pool index, drawn uniformly, reproducible from (seed, step).

    The draw is made for the global batch and then sliced, so ranks agree on it as well.
    """
    counts = np.array([len(views[i]) for i in indices], dtype=np.int64)
    if (counts == 0).any():
        missing = [int(i) for i in indices[counts == 0]][:5]
        raise ValueError(f"pool examples without any strong view (pool indices {missing}...)")
    draws = np.random.default_rng([seed, 97, step]).random(len(indices))
    picks = np.minimum((draws * counts).astype(np.int64), counts - 1)
    return [views[i][k] for i, k in zip(indices, picks)]
