"""Label-shift estimators: hand-worked values, and synthetic data with known priors."""

import numpy as np
import pytest

from guardmatch.evaluation.label_shift import (
    LabelShiftError,
    adapt_threshold,
    bbse_prior,
    em_prior,
    estimate_prior,
    reweight,
)


def test_reweight_by_hand():
    # prior 0.5 -> 0.7: weights 1.4 / 0.6; 1.4*0.9 / (1.26 + 0.06) = 0.954545...; 0.5 -> 0.7
    assert reweight([0.9, 0.5], 0.5, 0.7) == pytest.approx([1.26 / 1.32, 0.7])


def test_em_steps_and_fixed_point_by_hand():
    # step 1 from q = 0.5: mean(p) = 0.7; step 2: mean(0.954545, 0.7) = 0.827273
    two = em_prior([0.9, 0.5], 0.5, max_iter=2)
    assert (two.prior, two.iterations, two.converged) == (pytest.approx((1.26 / 1.32 + 0.7) / 2), 2, False)
    # p = [0.9, 0.1, 0.1], pi = 0.5: q = mean(9q/(8q+1), 2 x q/(9-8q)) -> 3u^2 - 31u + 56 = 0 (u = 8q): q = 7/24
    res = em_prior([0.9, 0.1, 0.1], 0.5)
    assert res.converged and res.prior == pytest.approx(7 / 24, abs=1e-6)


def test_bbse_by_hand():
    sp = [0.9, 0.8, 0.2, 0.1, 0.7, 0.3]
    y = [1, 1, 0, 0, 0, 1]  # C = [[2, 1], [1, 2]] / 6 (rows: predicted, columns: true)
    tp = [0.1, 0.2, 0.3, 0.6, 0.7, 0.8, 0.9, 0.95]  # mu = [3/8, 5/8]
    # [[2, 1], [1, 2]] w = 6 mu = [2.25, 3.75] -> w = [0.25, 1.75]; x P_s(y) = [0.125, 0.875]
    assert bbse_prior(sp, y, tp) == pytest.approx(0.875)
    with pytest.raises(LabelShiftError, match="singular"):
        bbse_prior([0.9, 0.9], [0, 1], tp)


def test_adapt_threshold_by_hand_and_consistent_with_reweight():
    assert adapt_threshold(0.5, 0.5, 0.2) == pytest.approx(0.8)  # odds x 4
    assert adapt_threshold(0.5, 0.2, 0.5) == pytest.approx(0.2)
    t0 = adapt_threshold(0.35, 0.55, 0.17)
    assert reweight([t0], 0.55, 0.17)[0] == pytest.approx(0.35)


def _synthetic(n, prior, rng, source_prior=0.5):
    """x | y ~ N(+-1, 1); the calibrated source posterior is sigmoid(2x + logit(source_prior))."""
    y = (rng.random(n) < prior).astype(int)
    x = rng.normal(np.where(y == 1, 1.0, -1.0), 1.0)
    logit_s = np.log(source_prior / (1 - source_prior))
    return 1 / (1 + np.exp(-(2 * x + logit_s))), y


@pytest.mark.parametrize("true_prior", [0.05, 0.17, 0.5, 0.8])
def test_estimators_recover_known_priors(true_prior):
    rng = np.random.default_rng(7)
    sp, sy = _synthetic(4000, 0.5, rng)
    tp, ty = _synthetic(20000, true_prior, rng)
    realized = ty.mean()  # the sample's own harmful rate (seeded: the check is deterministic)
    em = estimate_prior(tp, 0.5, bootstrap=100, seed=1)
    assert abs(em.prior - true_prior) < 0.02
    assert em.low <= realized <= em.high and em.high - em.low < 0.05
    bb = estimate_prior(tp, 0.5, method="bbse", source_p=sp, source_labels=sy, bootstrap=100, seed=1)
    assert abs(bb.prior - true_prior) < 0.04 and bb.low <= bb.prior <= bb.high


def test_adapted_threshold_raises_f1_under_shift():
    """Threshold 0.5 under a 0.5 source prior, deployed at 0.1: the adapted threshold flags better."""
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(3)
    tp, ty = _synthetic(20000, 0.1, rng)
    q = em_prior(tp, 0.5).prior
    t = adapt_threshold(0.5, 0.5, q)
    assert t > 0.5
    assert f1_score(ty, tp >= t) > f1_score(ty, tp >= 0.5) + 0.02


def test_bad_inputs_are_named():
    with pytest.raises(LabelShiftError, match="source_prior"):
        em_prior([0.2], 1.0)
    with pytest.raises(LabelShiftError, match="no probabilities"):
        em_prior([], 0.5)
    with pytest.raises(LabelShiftError, match="unknown label-shift method"):
        estimate_prior([0.2, 0.4], 0.5, method="magic")  # type: ignore[arg-type]
