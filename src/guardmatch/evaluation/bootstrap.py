"""Paired bootstrap of an F1 difference: is method A better than method B on the same test set?

Both methods are scored on the *same* test examples for each seed (the seed also draws the labeled
split, so seed ``s`` of A and seed ``s`` of B saw the same labels). One bootstrap replicate draws the
seeds with replacement and the test examples with replacement (one draw of examples, shared by both
methods and by every drawn seed: the pairing is kept), and records the mean over the drawn seeds of
``F1(A) - F1(B)`` at the threshold. The interval is the percentile interval of the replicates; the
point estimate is the plain mean over seeds of the per-seed differences (what the report's delta
tables show).

F1 on a resample is computed from weighted confusion counts: a replicate's example draw is a vector
of multiplicities ``w`` (how often each example was drawn), and ``TP = w @ [pred & y]`` etc., so the
``n_boot`` replicates are one matrix product per seed and method.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np


@dataclass(frozen=True)
class PairedInterval:
    """``mean`` of F1(A) - F1(B) over seeds, its ``lo``..``hi`` bootstrap interval at ``level``."""

    mean: float
    lo: float
    hi: float
    level: float
    n_boot: int
    seeds: int
    examples: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def excludes_zero(self) -> bool:
        return self.lo > 0 or self.hi < 0


def weighted_f1(weights: np.ndarray, y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Harmful-class F1 for each row of ``weights`` (example multiplicities), 0 where undefined.

    ``weights`` is ``(n_boot, n)`` or ``(n,)``; ``y`` and ``pred`` are 0/1 arrays of length n.
    """
    y = np.asarray(y, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    w = np.asarray(weights, dtype=np.float64)
    tp = w @ (y & pred).astype(np.float64)
    fp = w @ (~y & pred).astype(np.float64)
    fn = w @ (y & ~pred).astype(np.float64)
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros_like(tp, dtype=np.float64), where=denom > 0)


def paired_bootstrap_f1(labels: Sequence[int] | np.ndarray, scores_a: Sequence[Sequence[float] | np.ndarray],
                        scores_b: Sequence[Sequence[float] | np.ndarray], *, threshold: float = 0.5,
                        n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> PairedInterval:
    """F1(A) - F1(B), mean over seeds, with a bootstrap interval over test examples and seeds.

    ``scores_a[s]`` and ``scores_b[s]`` are P(harmful) of seed ``s`` of each method on the test
    examples whose gold labels are ``labels`` (the same examples, in the same order, for every seed).
    """
    y = np.asarray(labels, dtype=np.int64)
    if len(scores_a) != len(scores_b) or not len(scores_a):
        raise ValueError(f"paired bootstrap needs the same seeds for both methods: {len(scores_a)} vs {len(scores_b)}")
    pa = [np.asarray(s, dtype=np.float64) >= threshold for s in scores_a]
    pb = [np.asarray(s, dtype=np.float64) >= threshold for s in scores_b]
    for i, (a, b) in enumerate(zip(pa, pb)):
        if a.shape != y.shape or b.shape != y.shape:
            raise ValueError(f"seed {i}: {len(y)} labels but {len(a)} and {len(b)} scores")
    n, k = len(y), len(pa)
    ones = np.ones(n)
    per_seed = np.array([weighted_f1(ones, y, a) - weighted_f1(ones, y, b) for a, b in zip(pa, pb)])
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)  # (n_boot, n)
    diffs = np.stack([weighted_f1(weights, y, a) - weighted_f1(weights, y, b) for a, b in zip(pa, pb)], axis=1)
    seed_draws = rng.integers(0, k, size=(n_boot, k))                                    # (n_boot, k)
    replicates = np.take_along_axis(diffs, seed_draws, axis=1).mean(axis=1)
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(replicates, [alpha, 1.0 - alpha])
    return PairedInterval(mean=float(per_seed.mean()), lo=float(lo), hi=float(hi), level=level, n_boot=n_boot,
                          seeds=k, examples=n)
