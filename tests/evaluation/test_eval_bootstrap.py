"""Paired bootstrap of F1 differences: weighted confusion counts by hand, pairing, degenerate cases."""

import numpy as np
import pytest

from guardmatch.evaluation.bootstrap import paired_bootstrap_f1, weighted_f1
from guardmatch.evaluation.metrics import binary_metrics

Y = np.array([1, 1, 0, 0])
PRED = np.array([1, 0, 1, 0])  # one TP, one FN, one FP, one TN


@pytest.mark.parametrize(("weights", "f1"), [
    ([1, 1, 1, 1], 0.5),        # TP 1, FP 1, FN 1: 2 / (2 + 1 + 1)
    ([2, 0, 0, 1], 1.0),        # the TP twice, the TN once: no error
    ([0, 1, 1, 0], 0.0),        # FN + FP only
    ([3, 1, 0, 0], 6 / 7),      # TP 3, FN 1: 6 / (6 + 0 + 1)
    ([0, 0, 0, 3], 0.0),        # no positive, no prediction: undefined, reported 0 (as sklearn's zero_division=0)
])
def test_weighted_f1_by_hand(weights, f1):
    assert weighted_f1(np.array(weights), Y, PRED) == pytest.approx(f1)


def test_weighted_f1_rows_are_replicates_and_unit_weights_match_sklearn():
    rng = np.random.default_rng(3)
    y, p = rng.integers(0, 2, 200), rng.random(200)
    w = np.stack([np.ones(200), rng.multinomial(200, np.full(200, 1 / 200))])
    out = weighted_f1(w, y, p >= 0.5)
    assert out.shape == (2,)
    assert out[0] == pytest.approx(binary_metrics(y, p, 0.5)["f1"])
    resampled = np.repeat(np.arange(200), w[1].astype(int))   # the same replicate as explicit indices
    assert out[1] == pytest.approx(binary_metrics(y[resampled], p[resampled], 0.5)["f1"])


def test_identical_methods_give_a_zero_interval():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 100)
    s = [rng.random(100), rng.random(100)]
    iv = paired_bootstrap_f1(y, s, s, n_boot=200)
    assert (iv.mean, iv.lo, iv.hi) == (0.0, 0.0, 0.0) and not iv.excludes_zero
    assert (iv.seeds, iv.examples, iv.n_boot) == (2, 100, 200)


def test_point_estimate_is_the_mean_of_per_seed_differences_and_the_interval_brackets_it():
    y = np.array([1] * 50 + [0] * 50)
    perfect = y.astype(float)
    half = np.r_[np.ones(25), np.zeros(25), np.ones(25), np.zeros(25)]   # F1 0.5: TP 25, FN 25, FP 25
    never = np.zeros(100)                                               # F1 0
    # seed 0: perfect vs half (+0.5); seed 1: half vs half (0): mean +0.25
    iv = paired_bootstrap_f1(y, [perfect, half], [half, half], n_boot=500, seed=1)
    assert iv.mean == pytest.approx(0.25)
    # a quarter of the replicates draw seed 1 twice (difference exactly 0): more than the 2.5 % tail,
    # so the lower end is 0; the upper end is below seed 0's +0.5 resampled, always < 1
    assert iv.lo == 0.0 and iv.mean < iv.hi < 1.0 and not iv.excludes_zero
    assert paired_bootstrap_f1(y, [perfect, half], [half, half], n_boot=500, seed=1) == iv   # reproducible
    # a perfect method against one that never flags: +1 on every resample that holds a positive
    iv = paired_bootstrap_f1(y, [perfect], [never], n_boot=300)
    assert (iv.mean, iv.lo, iv.hi) == (1.0, 1.0, 1.0) and iv.excludes_zero


def test_mismatched_inputs_are_named():
    y = np.array([1, 0, 1])
    with pytest.raises(ValueError, match="same seeds"):
        paired_bootstrap_f1(y, [np.ones(3)], [np.ones(3), np.ones(3)])
    with pytest.raises(ValueError, match="seed 0: 3 labels but 2 and 3 scores"):
        paired_bootstrap_f1(y, [np.ones(2)], [np.ones(3)])
