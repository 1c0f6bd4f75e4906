"""Per-segment metrics (``guardmatch.evaluation.slices``) against hand-computed values."""

from __future__ import annotations

import math

import pytest

from guardmatch.data.example import Example
from guardmatch.evaluation.slices import format_markdown, metrics_by_segment, to_dataframe


def _ex(i: int, label: int, region: str | None) -> Example:
    meta = {} if region is None else {"region": region}
    return Example(id=str(i), prompt=f"p{i}", label=label, source="logs", metadata=meta)


def test_metrics_by_segment_matches_hand_computed_values():
    # EU: labels 1,1,0,0 probs .9,.2,.8,.1 -> tp1 fn1 fp1 tn1: P=R=F1=0.5
    # US: labels 1,0 probs .7,.3 -> perfect; missing region: one negative predicted negative
    examples = [_ex(0, 1, "EU"), _ex(1, 1, "EU"), _ex(2, 0, "EU"), _ex(3, 0, "EU"), _ex(4, 1, "US"), _ex(5, 0, "US"),
                _ex(6, 0, None)]
    probs = [0.9, 0.2, 0.8, 0.1, 0.7, 0.3, 0.4]
    rows = metrics_by_segment(examples, probs, threshold=0.5, segment_field="region", min_n=3)
    by = {r["value"]: r for r in rows}
    assert [r["value"] for r in rows] == ["ALL", "EU", "US", "<missing>"]
    eu = by["EU"]
    assert (eu["n"], eu["positives"], eu["f1"], eu["precision"], eu["recall"]) == (4, 2, 0.5, 0.5, 0.5)
    assert (by["US"]["f1"], by["US"]["small"]) == (1.0, True)
    assert by["<missing>"]["positives"] == 0 and by["<missing>"]["f1"] == 0.0
    # ALL: tp 2, fp 1, fn 1 -> P = R = F1 = 2/3
    assert math.isclose(by["ALL"]["f1"], 2 / 3) and by["ALL"]["n"] == 7
    assert list(to_dataframe(rows)["value"]) == ["ALL", "EU", "US", "<missing>"]
    assert "| EU | 4 | 2 | 0.500 |" in format_markdown(rows)
    assert metrics_by_segment(examples, probs, 0.5, "source")[1]["value"] == "logs"


def test_metrics_by_segment_rejects_unlabeled_and_mismatched_input():
    with pytest.raises(ValueError, match="2 examples but 1 scores"):
        metrics_by_segment([_ex(0, 1, "EU"), _ex(1, 0, "EU")], [0.1], 0.5, "region")
    with pytest.raises(ValueError, match="unlabeled"):
        metrics_by_segment([Example(id="u", prompt="x")], [0.1], 0.5, "region")
