"""Harmful-class metrics on plain arrays (cleanlab-style functional core, sklearn underneath)."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, precision_recall_fscore_support


def binary_metrics(y_true: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray,
                   threshold: float = 0.5) -> dict[str, Any]:
    """F1, precision and recall of the harmful class (1) at ``threshold``, AUPRC and confusion counts."""
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    if y.shape != p.shape:
        raise ValueError(f"{len(y)} labels but {len(p)} scores")
    pred = (p >= threshold).astype(np.int64)
    prec, rec, f1, _ = precision_recall_fscore_support(y, pred, average="binary", pos_label=1, zero_division=0)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    has_both = 0 < y.sum() < len(y)
    return {
        "n": int(len(y)),
        "positives": int(y.sum()),
        "threshold": float(threshold),
        "f1": float(f1),
        "precision": float(prec),
        "recall": float(rec),
        "auprc": float(average_precision_score(y, p)) if has_both else float("nan"),
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "tp": int(tp),
        "fp": int(fp),
        "fn": int(fn),
        "tn": int(tn),
        "fpr": float(fp / (fp + tn)) if (fp + tn) else float("nan"),
    }


def threshold_sweep(
    y_true: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray,
    thresholds: Sequence[float] | np.ndarray | None = None,
) -> list[dict[str, float]]:
    """Precision, recall, F1 and FPR at each threshold (default 0.05, 0.10, ..., 0.95)."""
    if thresholds is None:
        thresholds = np.round(np.arange(0.05, 0.951, 0.05), 2)
    rows = []
    for t in thresholds:
        m = binary_metrics(y_true, probs, float(t))
        rows.append({k: m[k] for k in ("threshold", "precision", "recall", "f1", "fpr")})
    return rows


def best_f1_threshold(y_true: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """The threshold (midpoint between distinct scores) that maximises harmful-class F1."""
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    order = np.argsort(-p, kind="stable")
    ys, ps = y[order], p[order]
    tp = np.cumsum(ys)
    k = np.arange(1, len(ys) + 1)
    f1 = 2 * tp / (k + ys.sum())
    # only cut between distinct scores
    valid = np.r_[ps[1:] < ps[:-1], True]
    f1 = np.where(valid, f1, -1)
    best = int(np.argmax(f1))
    thr = float((ps[best] + ps[best + 1]) / 2) if best + 1 < len(ps) else float(ps[best])
    return thr, float(f1[best])


def expected_calibration_error(y_true: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray,
                               n_bins: int = 15) -> float:
    """ECE of P(harmful) with equal-width bins: sum_b |B|/N * |mean(y in B) - mean(p in B)|."""
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    if len(y) == 0:
        return math.nan
    bins = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        sel = bins == b
        total += sel.mean() * abs(y[sel].mean() - p[sel].mean())
    return float(total)
