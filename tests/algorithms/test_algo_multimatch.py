"""MultiMatch: every row of the weight table, γ recalibration (empty sets), SAT, loss balance."""

from __future__ import annotations

import math

import pytest
import torch

from guardmatch.algorithms import build_algorithm


def _algo(pool_size=10, **cfg):
    return build_algorithm("multimatch", cfg, num_classes=2, pool_size=pool_size)


def test_weight_table_every_row():
    algo = _algo()
    # target head 0 is taught by heads i=1, j=2 and uses its own γ row: γ[0] = [0.5, 1.0]
    # heads 1 and 2 use γ = 100: nothing passes for them -> all their weights are 0
    algo.gamma.copy_(torch.tensor([[0.5, 1.0], [100.0, 100.0], [100.0, 100.0]]))
    algo.calibrated.fill_(True)
    pseudo = torch.tensor([
        [0, 0, 0, 0, 0, 0, 0, 0],  # head 0 (does not vote for itself)
        [1, 1, 1, 1, 0, 0, 0, 0],  # head 1 (= i)
        [1, 1, 1, 1, 1, 1, 1, 1],  # head 2 (= j)
    ])
    apm = torch.tensor([
        [9.0] * 8,
        # pass_i: APM_1[ĉ_1] ≥ γ[0][ĉ_1] (1.0 for c1, 0.5 for c0)
        [1.2, 1.5, 0.2, -1.0, 0.5, 0.7, 0.49, 0.0],
        # pass_j: APM_2[ĉ_2] ≥ γ[0][1] = 1.0
        [1.0, 0.9, 2.0, 0.99, 1.0, 0.1, 3.0, 0.5],
    ])
    label, weight, agree = algo.pseudo_label_weights(pseudo, apm)
    # u0 agree, both pass   -> (1, 1)      u4 disagree, both pass -> 0
    # u1 agree, i passes    -> (1, w_d)    u5 disagree, i passes  -> (ĉ_i = 0, w_d)
    # u2 agree, j passes    -> (1, w_d)    u6 disagree, j passes  -> (ĉ_j = 1, w_d)
    # u3 agree, none passes -> 0           u7 disagree, none      -> 0
    assert weight[0].tolist() == [1.0, 3.0, 3.0, 0.0, 0.0, 3.0, 3.0, 0.0]
    used = weight[0] > 0
    assert label[0][used].tolist() == [1, 1, 1, 0, 1]
    assert agree[0].tolist() == [True] * 4 + [False] * 4
    assert torch.equal(weight[1:], torch.zeros(2, 8))
    # before the first calibration every weight is 0
    algo.calibrated.fill_(False)
    assert torch.equal(algo.pseudo_label_weights(pseudo, apm)[1], torch.zeros(3, 8))


def test_recalibration_empty_agreement_set_continues():
    algo = _algo(pool_size=4)
    algo.gamma.fill_(99.0)  # stale values must all be replaced
    algo.table.last_labels.copy_(torch.tensor([
        [0, 0, 0, -1],
        [1, 1, 0, -1],
        [1, 1, 1, -1],
    ]))
    apm = algo.table.apm
    apm[1, 0, 1], apm[1, 1, 1], apm[2, 0, 1], apm[2, 1, 1] = 1.0, 2.0, 3.0, 4.0
    apm[0, 2, 0], apm[1, 2, 0] = 0.3, -0.7
    algo.recalibrate()
    # head 0 (i=1, j=2): S_0 empty -> γ = 0 and go on; S_1 = {0, 1}: 5th pct of [1, 2, 3, 4]
    #   = 1 + 0.05 * 3 = 1.15 (a `break` on the empty c0 would have left 99 here)
    # head 1 (i=0, j=2): heads 0 and 2 never agree -> [0, 0]
    # head 2 (i=0, j=1): S_0 = {2}: 5th pct of [0.3, -0.7] = -0.7 + 0.05 * 1.0 = -0.65 (negative
    #   allowed, no_low); S_1 empty -> 0
    assert torch.allclose(algo.gamma, torch.tensor([[0.0, 1.15], [0.0, 0.0], [-0.65, 0.0]]))
    assert bool(algo.calibrated)
    clamped = _algo(pool_size=4, no_low=False)
    clamped.table.last_labels.copy_(algo.table.last_labels)
    clamped.table.apm.copy_(apm)
    clamped.recalibrate()
    assert clamped.gamma[2, 0].item() == 0.0


def _step(algo, z_w, ids, step, z_s=None, labels=None, z_lb=None):
    z_w = torch.as_tensor(z_w, dtype=torch.float32)
    z_s = torch.zeros_like(z_w, requires_grad=True) if z_s is None else z_s
    z_lb = torch.zeros(3, 1, 2, requires_grad=True) if z_lb is None else z_lb
    out = algo.step(
        logits_lb=z_lb, labels_lb=torch.tensor([0]) if labels is None else labels,
        logits_ulb_w=z_w, logits_ulb_s=z_s, ulb_ids=torch.tensor(ids), step=step,
    )
    return out, z_s


def test_recalibration_schedule_one_pass_over_pool_and_warmup():
    algo = _algo(pool_size=10)
    z_w = torch.randn(3, 4, 2) * 3
    for step in range(6):
        out, _ = _step(algo, z_w, [0, 1, 2, 3], step)
        # ceil(10 / 4) = 3 steps per pass: calibrated after steps 2 and 5
        assert algo.recalibrate_every.item() == 3
        assert bool(algo.calibrated) == (step >= 2)
        if step <= 2:
            assert out.logs["unsup_loss"] == 0.0 and out.logs["mask_rate"] == 0.0  # supervised warm-up
    assert algo.last_recalibration_step.item() == 5


def test_sat_updated_once_per_step_and_aux_mask_is_or():
    algo = _algo(sat_momentum=0.9, recalibrate_every=100)
    # head 0 weak probs: [0.9, 0.1] and [0.2, 0.8]: mean max q = 0.85 -> τ = 0.9*0.5 + 0.1*0.85 = 0.535
    z0 = torch.tensor([[math.log(9.0), 0.0], [0.0, math.log(4.0)]])
    _step(algo, torch.stack([z0, z0, z0]), [0, 1], step=0)
    assert algo.policies[0].tau.item() == pytest.approx(0.535)  # twice would be 0.5665
    algo.policies[0].tau.fill_(0.9)
    algo.policies[1].tau.fill_(0.7)
    algo.policies[2].tau.fill_(0.99)
    for policy in algo.policies:
        policy.p_tilde.fill_(0.5)
    probs = torch.tensor([[0.95, 0.05], [0.8, 0.2], [0.6, 0.4]]).expand(3, 3, 2)
    # confident: head 0 {u0}; head 1 {u0, u1}; head 2 {}
    # target 0 = head 1 OR head 2 -> [1, 1, 0]; target 1 = head 0 OR head 2 -> [1, 0, 0];
    # target 2 = head 0 OR head 1 -> [1, 1, 0]
    assert algo.aux_mask(probs).tolist() == [[1, 1, 0], [1, 0, 0], [1, 1, 0]]


def test_loss_balance_sum_of_supervised_mean_of_unsupervised():
    algo = _algo(confidence="none", recalibrate_every=1000)
    algo.gamma.fill_(-100.0)
    algo.calibrated.fill_(True)
    # every head predicts class 1 on the weak view and passes: each target gets (1, weight 1)
    z_w = torch.tensor([[[0.0, 2.0]]] * 3)
    z_s = torch.tensor([[[0.0, 0.0]], [[0.0, math.log(3.0)]], [[math.log(3.0), 0.0]]], requires_grad=True)
    out, _ = _step(algo, z_w, [7], 0, z_s=z_s)
    # L_u^h = CE(z_s^h, 1): ln 2, ln(4/3), ln 4 -> L_u = mean = ln(32/3)/3
    # L_s = Σ_h CE([0, 0], 0) = 3 ln 2;  L = L_s + 3 L_u = 3 ln 2 + ln(32/3)
    assert out.logs["unsup_loss"] == pytest.approx(math.log(32 / 3) / 3, rel=1e-6)
    assert out.logs["sup_loss"] == pytest.approx(3 * math.log(2.0), rel=1e-6)
    assert out.loss.item() == pytest.approx(3 * math.log(2.0) + math.log(32 / 3), rel=1e-6)
    assert out.logs["mask_rate"] == 1.0 and out.logs["agree_rate"] == 1.0


def test_weak_logits_get_no_gradient_and_prediction_is_head_mean():
    algo = _algo()
    z_w = torch.randn(3, 4, 2, requires_grad=True)
    z_s = torch.randn(3, 4, 2, requires_grad=True)
    out = algo.step(
        logits_lb=torch.randn(3, 2, 2, requires_grad=True), labels_lb=torch.tensor([0, 1]),
        logits_ulb_w=z_w, logits_ulb_s=z_s, ulb_ids=torch.tensor([0, 1, 2, 3]), step=0,
    )
    out.loss.backward()
    assert z_w.grad is None
    logits = torch.tensor([[[1.0, 0.0]], [[0.0, 3.0]], [[2.0, 0.0]]])
    assert torch.allclose(algo.predict_logits(logits), torch.tensor([[1.0, 1.0]]))
    with pytest.raises(ValueError, match=r"must be shaped \(3, 4, 2\)"):
        algo.step(logits_lb=torch.zeros(3, 1, 2), labels_lb=torch.tensor([0]), logits_ulb_w=torch.zeros(1, 4, 2),
                  logits_ulb_s=torch.zeros(3, 4, 2), ulb_ids=torch.tensor([0, 1, 2, 3]), step=1)
