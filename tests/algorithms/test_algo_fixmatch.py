"""FixMatch: mask, loss scaling (mean over all μB), gradients, supervised baseline, registry."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from guardmatch.algorithms import FixMatchConfig, build_algorithm, get_algorithm


def _batch():
    # weak logits: max q = sigmoid(3) = 0.9526 (≥ 0.95, ŷ=0); sigmoid(0.5) = 0.62 (masked);
    #              sigmoid(4) = 0.982 (≥ 0.95, ŷ=1)
    z_w = torch.tensor([[[3.0, 0.0], [0.0, 0.5], [0.0, 4.0]]], requires_grad=True)
    # strong logits: CE(row 0, ŷ=0) = ln 2; CE(row 2, ŷ=1) = -ln(3/4) = ln(4/3)
    z_s = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, math.log(3.0)]]], requires_grad=True)
    z_lb = torch.tensor([[[0.0, 0.0]]], requires_grad=True)  # CE = ln 2 for either label
    return z_w, z_s, z_lb


def test_fixmatch_mask_and_loss_scaling_by_hand():
    algo = build_algorithm("fixmatch", {"lambda_u": 2.0}, num_classes=2, pool_size=10)
    z_w, z_s, z_lb = _batch()
    out = algo.step(
        logits_lb=z_lb, labels_lb=torch.tensor([1]), logits_ulb_w=z_w, logits_ulb_s=z_s,
        ulb_ids=torch.tensor([4, 5, 6]), step=0, ulb_true_labels=torch.tensor([0, -1, 0]),
    )
    # L_u = (ln 2 + 0 + ln 4/3) / 3: divided by all 3 unlabeled examples, not by the 2 masked in
    unsup = (math.log(2.0) + math.log(4 / 3)) / 3
    assert out.logs["unsup_loss"] == pytest.approx(unsup, rel=1e-6)
    assert out.logs["sup_loss"] == pytest.approx(math.log(2.0), rel=1e-6)
    assert out.loss.item() == pytest.approx(math.log(2.0) + 2.0 * unsup, rel=1e-6)
    assert out.logs["mask_rate"] == pytest.approx(2 / 3)
    # masked examples with a known label: row 0 (ŷ=0, y=0 ✓), row 2 (ŷ=1, y=0 ✗)
    assert out.logs["pseudo_label_acc"] == pytest.approx(0.5)
    # of the 2 used pseudo-labels, one (row 2) says harmful
    assert out.logs["pseudo_harmful_rate"] == pytest.approx(0.5)


def test_fixmatch_gradients_reach_strong_logits_only():
    algo = build_algorithm("fixmatch", {"lambda_u": 2.0}, num_classes=2, pool_size=10)
    z_w, z_s, z_lb = _batch()
    out = algo.step(
        logits_lb=z_lb, labels_lb=torch.tensor([1]), logits_ulb_w=z_w, logits_ulb_s=z_s,
        ulb_ids=torch.tensor([4, 5, 6]), step=0,
    )
    out.loss.backward()
    assert z_w.grad is None  # pseudo-labels are targets, never trained through
    # d L/d z_s[row 0] = λ_u (softmax - onehot(0)) / 3 = 2 * ([0.5, 0.5] - [1, 0]) / 3
    assert torch.allclose(z_s.grad[0, 0], torch.tensor([-1 / 3, 1 / 3]))
    assert torch.equal(z_s.grad[0, 1], torch.zeros(2))  # masked: no gradient
    # row 2: 2 * ([1/4, 3/4] - [0, 1]) / 3
    assert torch.allclose(z_s.grad[0, 2], torch.tensor([1 / 6, -1 / 6]))
    assert torch.allclose(z_lb.grad[0, 0], torch.tensor([0.5, -0.5]))


def test_fixmatch_with_flexmatch_policy_updates_pool_state():
    algo = build_algorithm("fixmatch", {"confidence": "flexmatch"}, num_classes=2, pool_size=10)
    z_w, z_s, z_lb = _batch()
    out = algo.step(
        logits_lb=z_lb, labels_lb=torch.tensor([1]), logits_ulb_w=z_w, logits_ulb_s=z_s,
        ulb_ids=torch.tensor([4, 5, 6]), step=0,
    )
    # confident: id 4 -> c0, id 6 -> c1; σ = [1, 1], unused 8 -> β = [1/8, 1/8]
    assert algo.policy.selected_label.tolist() == [-1] * 4 + [0, -1, 1] + [-1] * 3
    t = 0.95 * (1 / 8) / (2 - 1 / 8)
    assert out.logs["threshold_c0"] == pytest.approx(t)
    assert out.logs["mask_rate"] == 1.0  # every max q ≥ 0.063


def test_supervised_sums_over_heads_and_ignores_unlabeled():
    algo = build_algorithm("supervised", {"num_heads": 3}, num_classes=2)
    assert not algo.uses_unlabeled and algo.num_heads == 3
    z_lb = torch.zeros(3, 2, 2, requires_grad=True)
    out = algo.step(logits_lb=z_lb, labels_lb=torch.tensor([0, 1]), step=0)
    assert out.loss.item() == pytest.approx(3 * math.log(2.0))  # Σ_h of the mean CE
    out.loss.backward()
    assert torch.allclose(z_lb.grad[1, 0], torch.tensor([-0.25, 0.25]))


def test_registry_and_config_errors():
    assert get_algorithm("fixmatch").name == "fixmatch"
    with pytest.raises(KeyError, match="available: fixmatch, marginmatch, multimatch, supervised"):
        get_algorithm("mixmatch")
    with pytest.raises(ValidationError, match="thresh"):
        build_algorithm("fixmatch", {"thresh": 0.9}, num_classes=2, pool_size=4)
    with pytest.raises(TypeError, match="FixMatchConfig"):
        build_algorithm("fixmatch", get_algorithm("marginmatch").config_cls(), num_classes=2, pool_size=4)
    algo = build_algorithm("fixmatch", FixMatchConfig(threshold=0.7), num_classes=2, pool_size=4)
    assert algo.config.threshold == 0.7 and algo.config.lambda_u == 1.0
    with pytest.raises(ValueError, match="pool_size"):
        build_algorithm("fixmatch", None, num_classes=2, pool_size=0)


def test_input_shape_errors_are_clear():
    algo = build_algorithm("fixmatch", None, num_classes=2, pool_size=4)
    good = dict(logits_lb=torch.zeros(1, 1, 2), labels_lb=torch.tensor([0]), step=0)
    with pytest.raises(ValueError, match=r"logits_ulb_s must be shaped \(1, 2, 2\)"):
        algo.step(**good, logits_ulb_w=torch.zeros(1, 2, 2), logits_ulb_s=torch.zeros(3, 2, 2), ulb_ids=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="ulb_ids must be in"):
        algo.step(**good, logits_ulb_w=torch.zeros(1, 2, 2), logits_ulb_s=torch.zeros(1, 2, 2), ulb_ids=torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="needs logits_ulb_w"):
        algo.step(**good)
    with pytest.raises(ValueError, match="labels_lb must be in"):
        algo.step(logits_lb=torch.zeros(1, 1, 2), labels_lb=torch.tensor([2]), step=0)


def test_distribution_alignment_by_hand():
    """As USB's DistAlignEMAHook: the first batch sets p_model = mean(q) = [0.7, 0.3]; q * 0.5 / p_model,
    renormalised: [0.8, 0.2] -> [8/7, 2/3] -> [12/19, 7/19]; [0.6, 0.4] -> [9/23, 14/23]. A second batch
    [[0.6, 0.4]] with m = 0.5: p_model = [0.65, 0.35]; [0.8, 0.2] -> [16/13, 4/7] -> [28/41, 13/41]."""
    cfg = {"threshold": 0.75, "distribution_alignment": True, "da_momentum": 0.5}
    algo = build_algorithm("fixmatch", cfg, num_classes=2, pool_size=10)
    z_w = torch.log(torch.tensor([[[0.8, 0.2], [0.6, 0.4]]]))
    z_s = torch.zeros(1, 2, 2)
    out = algo.step(logits_lb=torch.zeros(1, 1, 2), labels_lb=torch.tensor([0]), logits_ulb_w=z_w, logits_ulb_s=z_s,
                    ulb_ids=torch.tensor([0, 1]), step=0)
    assert torch.allclose(algo.p_model, torch.tensor([0.7, 0.3]))
    first = algo.align(torch.tensor([[0.8, 0.2], [0.6, 0.4]]), torch.tensor([[0.6, 0.4]]))
    assert torch.allclose(algo.p_model, torch.tensor([0.65, 0.35]))
    assert torch.allclose(first[0], torch.tensor([28 / 41, 13 / 41]), rtol=1e-5)
    fresh = build_algorithm("fixmatch", cfg, num_classes=2, pool_size=10)
    aligned = fresh.align(torch.tensor([[0.8, 0.2], [0.6, 0.4]]), torch.tensor([[0.8, 0.2], [0.6, 0.4]]))
    assert torch.allclose(aligned, torch.tensor([[12 / 19, 7 / 19], [9 / 23, 14 / 23]]), rtol=1e-5)
    assert out.logs["mask_rate"] == 0.0  # 12/19 = 0.63 < 0.75; plain FixMatch masks row 0 in (0.8)
    plain = build_algorithm("fixmatch", {"threshold": 0.75}, num_classes=2, pool_size=10)
    out_plain = plain.step(logits_lb=torch.zeros(1, 1, 2), labels_lb=torch.tensor([0]), logits_ulb_w=z_w,
                           logits_ulb_s=z_s, ulb_ids=torch.tensor([0, 1]), step=0)
    assert out_plain.logs["mask_rate"] == 0.5
    assert "p_model" in algo.state_dict() and "p_model" not in plain.state_dict()
