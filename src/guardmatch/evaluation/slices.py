"""Metrics per segment (product, region, user type, source, any metadata field).

``metrics_by_segment(examples, probs, threshold, segment_field)`` returns one row per segment
value plus an ``ALL`` row: harmful-class F1, precision, recall (sklearn, via
:func:`guardmatch.evaluation.metrics.binary_metrics`), ``n`` and ``positives``. Segments smaller
than ``min_n`` are flagged ``small`` (their F1 is noisy), never dropped.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence, cast

import numpy as np

from guardmatch.data.example import Example
from guardmatch.data.validation import DataError
from guardmatch.evaluation.metrics import binary_metrics

MISSING = "<missing>"
ALL = "ALL"
_COLUMNS = ("segment", "value", "n", "positives", "f1", "precision", "recall", "fpr", "tp", "fp", "fn", "tn", "small")


def segment_value(example: Example, segment_field: str) -> str:
    """The example's value for ``segment_field``: a metadata field, or ``source``/``kind``."""
    if segment_field in example.metadata:
        value = example.metadata[segment_field]
    elif segment_field == "source":
        value = example.source
    else:
        value = None
    if value is None or (isinstance(value, float) and value != value) or value == "":
        return MISSING
    return str(value)


def metrics_by_segment(
    examples: Sequence[Example],
    probs: Sequence[float] | np.ndarray,
    threshold: float = 0.5,
    segment_field: str = "source",
    min_n: int = 30,
) -> list[dict[str, Any]]:
    """Per-segment harmful-class metrics at ``threshold``; the ``ALL`` row first, then by size."""
    if len(examples) != len(probs):
        raise ValueError(f"{len(examples)} examples but {len(probs)} scores")
    unlabeled = [ex.id for ex in examples if ex.label is None]
    if unlabeled:
        raise DataError(f"{len(unlabeled)} unlabeled examples (e.g. {unlabeled[:3]}); slices need labels")
    groups: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        groups[segment_value(ex, segment_field)].append(i)

    def row(value: str, idx: list[int]) -> dict[str, Any]:
        labels = [cast(int, examples[i].label) for i in idx]  # unlabeled examples were rejected above
        m = binary_metrics(labels, [float(probs[i]) for i in idx], threshold)
        out = {"segment": segment_field, "value": value, **{k: m[k] for k in _COLUMNS[2:-1]}}
        out["small"] = len(idx) < min_n
        return out

    rows = [row(ALL, list(range(len(examples))))]
    for value, idx in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        rows.append(row(value, idx))
    return rows


def to_dataframe(rows: list[dict[str, Any]]):
    """The rows as a pandas DataFrame (columns in a fixed order)."""
    import pandas as pd

    return pd.DataFrame(rows, columns=list(_COLUMNS))


def format_markdown(rows: list[dict[str, Any]]) -> str:
    """A markdown table of the rows (for reports)."""
    header = ["| " + rows[0]["segment"] + " | n | positives | F1 | precision | recall |", "|---|---:|---:|---:|---:|---:|"]
    lines = header if rows else []
    for r in rows:
        flag = " (small)" if r["small"] and r["value"] != ALL else ""
        lines.append(f"| {r['value']}{flag} | {r['n']} | {r['positives']} | {r['f1']:.3f} | {r['precision']:.3f} "
                     f"| {r['recall']:.3f} |")
    return "\n".join(lines)
