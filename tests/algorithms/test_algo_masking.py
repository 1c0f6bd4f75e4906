"""Confidence policies: fixed τ, FlexMatch class-wise thresholds, FreeMatch SAT (values by hand)."""

from __future__ import annotations

import pytest
import torch

from guardmatch.algorithms import FixedThreshold, FlexMatchThreshold, FreeMatchSAT, build_policy

P4 = torch.tensor([[0.95, 0.05], [0.3, 0.7], [0.08, 0.92], [0.99, 0.01]])


def test_fixed_threshold_is_inclusive_and_stateless():
    policy = FixedThreshold(2, threshold=0.95)
    probs = torch.tensor([[0.95, 0.05], [0.94, 0.06], [0.02, 0.98]])
    assert policy.mask(probs).tolist() == [1.0, 0.0, 1.0]
    assert dict(policy.state_dict()) == {}


def test_flexmatch_thresholds_with_warmup_by_hand():
    policy = FlexMatchThreshold(2, pool_size=6, threshold=0.9, warmup=True)
    policy.update(P4, torch.tensor([0, 1, 2, 3]))
    # confident (max q ≥ 0.9): id 0 -> c0, id 2 -> c1, id 3 -> c0; id 1 (0.7) is not
    assert policy.selected_label.tolist() == [0, -1, 1, 0, -1, -1]
    # σ = [2, 1], unused = 3; warm-up: β = σ / max(2, 3) = [2/3, 1/3]
    assert torch.allclose(policy.classwise_acc, torch.tensor([2 / 3, 1 / 3]))
    # T(c) = τ β/(2 - β): c0 = 0.9 * (2/3)/(4/3) = 0.45; c1 = 0.9 * (1/3)/(5/3) = 0.18
    assert torch.allclose(policy.class_thresholds(), torch.tensor([0.45, 0.18]))
    # with two classes max q ≥ 0.5 > 0.45: every example passes this early
    assert policy.mask(torch.tensor([[0.55, 0.45], [0.4, 0.6]])).tolist() == [1.0, 1.0]


def test_flexmatch_thresholds_without_warmup_by_hand():
    policy = FlexMatchThreshold(2, pool_size=6, threshold=0.9, warmup=False)
    policy.update(P4, torch.tensor([0, 1, 2, 3]))
    # β = σ / max σ = [2/2, 1/2]; T = [0.9 * 1/1, 0.9 * 0.5/1.5] = [0.9, 0.3]
    assert torch.allclose(policy.class_thresholds(), torch.tensor([0.9, 0.3]))
    probs = torch.tensor([[0.6, 0.4], [0.2, 0.8], [0.95, 0.05], [0.69, 0.31]])
    assert policy.mask(probs).tolist() == [0.0, 1.0, 1.0, 0.0]
    # a later confident prediction replaces the stored one: id 0 becomes c1 -> σ = [1, 2]
    policy.update(torch.tensor([[0.04, 0.96]]), torch.tensor([0]))
    assert policy.selected_label.tolist() == [1, -1, 1, 0, -1, -1]
    assert torch.allclose(policy.classwise_acc, torch.tensor([0.5, 1.0]))


def test_flexmatch_class_never_predicted():
    policy = FlexMatchThreshold(2, pool_size=6, threshold=0.9, warmup=False)
    policy.update(torch.tensor([[0.95, 0.05]]), torch.tensor([0]))
    # σ = [1, 0] -> β = [1, 0]: c1 was never predicted confidently, its threshold is 0
    assert torch.allclose(policy.class_thresholds(), torch.tensor([0.9, 0.0]))
    assert policy.mask(torch.tensor([[0.4, 0.6], [0.8, 0.2]])).tolist() == [1.0, 0.0]
    warm = FlexMatchThreshold(2, pool_size=6, threshold=0.9, warmup=True)
    warm.update(torch.tensor([[0.95, 0.05]]), torch.tensor([0]))
    # warm-up: β = [1, 0] / max(1, unused 5) = [0.2, 0]; T_c0 = 0.9 * 0.2/1.8 = 0.1
    assert torch.allclose(warm.class_thresholds(), torch.tensor([0.1, 0.0]))


def test_flexmatch_nothing_selected_is_finite():
    for warmup in (True, False):
        policy = FlexMatchThreshold(2, pool_size=4, threshold=0.95, warmup=warmup)
        policy.update(torch.tensor([[0.6, 0.4]]), torch.tensor([1]))
        # no confident example: σ = 0, β = 0 (no division by zero), thresholds 0
        assert torch.equal(policy.class_thresholds(), torch.zeros(2))


def test_sat_update_and_mask_by_hand():
    sat = FreeMatchSAT(2, momentum=0.9)
    # initial τ = 1/C = 0.5, p̃ = [0.5, 0.5]
    assert sat.tau.item() == pytest.approx(0.5)
    assert sat.p_tilde.tolist() == pytest.approx([0.5, 0.5])
    sat.update(torch.tensor([[0.9, 0.1], [0.3, 0.7]]), torch.tensor([0, 1]))
    # mean max q = (0.9 + 0.7)/2 = 0.8 -> τ = 0.9*0.5 + 0.1*0.8 = 0.53
    # mean q = [0.6, 0.4] -> p̃ = 0.9*[0.5, 0.5] + 0.1*[0.6, 0.4] = [0.51, 0.49]
    assert sat.tau.item() == pytest.approx(0.53)
    assert sat.p_tilde.tolist() == pytest.approx([0.51, 0.49])
    # thresholds τ p̃[c]/max p̃: c0 = 0.53, c1 = 0.53 * 0.49/0.51 = 0.509216
    assert sat.class_thresholds().tolist() == pytest.approx([0.53, 0.53 * 0.49 / 0.51])
    probs = torch.tensor([[0.52, 0.48], [0.49, 0.51], [0.45, 0.55], [0.535, 0.465]])
    assert sat.mask(probs).tolist() == [0.0, 1.0, 1.0, 1.0]
    # a second update compounds the momentum once more
    sat.update(torch.tensor([[1.0, 0.0]]), torch.tensor([2]))
    assert sat.tau.item() == pytest.approx(0.9 * 0.53 + 0.1 * 1.0)  # 0.577
    assert sat.p_tilde.tolist() == pytest.approx([0.559, 0.441])


def test_sat_default_momentum_single_update():
    sat = FreeMatchSAT(2)  # m = 0.999
    sat.update(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
    # τ = 0.999 * 0.5 + 0.001 * 1 = 0.5005 (0.999² would be a double update: 0.50099...)
    assert sat.tau.item() == pytest.approx(0.5005)


def test_build_policy_names():
    assert isinstance(build_policy("fixed", num_classes=2, pool_size=3), FixedThreshold)
    assert isinstance(build_policy("flexmatch", num_classes=2, pool_size=3), FlexMatchThreshold)
    assert isinstance(build_policy("freematch", num_classes=2, pool_size=3), FreeMatchSAT)
    assert build_policy("none", num_classes=2, pool_size=3).mask(torch.tensor([[0.5, 0.5]])).tolist() == [1.0]
    with pytest.raises(ValueError, match="unknown confidence policy"):
        build_policy("softmatch", num_classes=2, pool_size=3)  # type: ignore[arg-type]
