"""Harmful-class metrics against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from guardmatch.evaluation.metrics import (
    best_f1_threshold,
    binary_metrics,
    expected_calibration_error,
    threshold_sweep,
)
from guardmatch.evaluation.report import evaluate_scores


def test_binary_metrics_by_hand():
    y = [1, 1, 1, 0, 0, 0]
    p = [0.9, 0.6, 0.2, 0.7, 0.1, 0.4]
    m = binary_metrics(y, p, threshold=0.5)
    # predicted harmful: 0.9 (tp), 0.6 (tp), 0.7 (fp); missed 0.2 (fn)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 2)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["fpr"] == pytest.approx(1 / 3)
    # AP: ranking 0.9(+) 0.7(-) 0.6(+) 0.4(-) 0.2(+) 0.1(-): precision at each positive 1, 2/3, 3/5
    assert m["auprc"] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)


def test_threshold_at_boundary_counts_as_harmful():
    assert binary_metrics([1], [0.5], threshold=0.5)["tp"] == 1


def test_sweep_rows_and_monotone_recall():
    rows = threshold_sweep([1, 0, 1, 0], [0.8, 0.3, 0.55, 0.6])
    assert [r["threshold"] for r in rows][:2] == [0.05, 0.1]
    recalls = [r["recall"] for r in rows]
    assert all(a >= b for a, b in zip(recalls, recalls[1:]))


def test_best_f1_threshold_by_hand():
    # scores sorted: 0.9(+) 0.8(-) 0.7(+) 0.1(-): cutting after 0.7 gives tp=2, k=3, F1 = 4/5
    thr, f1 = best_f1_threshold([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1])
    assert f1 == pytest.approx(0.8)
    assert thr == pytest.approx(0.4)
    assert binary_metrics([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1], thr)["f1"] == pytest.approx(0.8)


def test_ece_by_hand():
    # two bins used (n_bins=2): [0,0.5) holds p=0.2,0.4 with labels 0,1 -> |0.5-0.3|=0.2;
    # [0.5,1] holds p=0.9,0.9 with labels 1,1 -> |1-0.9| = 0.1. ECE = 0.5*0.2 + 0.5*0.1 = 0.15
    assert expected_calibration_error([0, 1, 1, 1], [0.2, 0.4, 0.9, 0.9], n_bins=2) == pytest.approx(0.15)


def test_single_class_auprc_is_nan_not_crash():
    m = binary_metrics([0, 0], [0.1, 0.7])
    assert math.isnan(m["auprc"]) and m["f1"] == 0.0


def test_report_markdown_and_save(tmp_path):
    from guardmatch.evaluation.report import EvaluationReport

    results = evaluate_scores({"setA": ([1, 0], [0.9, 0.2]), "setB": ([1, 1, 0], [0.3, 0.8, 0.6])}, 0.5)
    report = EvaluationReport(model="m", task="prompt", threshold=0.5, results=results)
    md = report.to_markdown()
    assert "| setA | 2 | 1 | 1.000 |" in md
    assert "| setB | 3 | 2 | 0.500 |" in md
    report.save(tmp_path)
    assert np.load(tmp_path / "scores" / "setB.scores.npy").tolist() == [0.3, 0.8, 0.6]
