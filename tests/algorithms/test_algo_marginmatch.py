"""MarginMatch: APM filter with γ = 0, warm-up, the virtual-class γ (stated percentile), threshold examples."""

from __future__ import annotations

import math

import pytest
import torch

from guardmatch.algorithms import build_algorithm


def _step(algo, z_w, ids, step, z_s=None, true=None):
    z_w = torch.as_tensor(z_w).unsqueeze(0)
    z_s = torch.zeros_like(z_w, requires_grad=True) if z_s is None else z_s
    out = algo.step(
        logits_lb=torch.zeros(1, 1, z_w.shape[-1]), labels_lb=torch.tensor([0]),
        logits_ulb_w=z_w, logits_ulb_s=z_s, ulb_ids=torch.tensor(ids), step=step, ulb_true_labels=true,
    )
    return out, z_s


def test_zero_mode_apm_filter_by_hand():
    algo = build_algorithm("marginmatch", {"delta": 1.0}, num_classes=2, pool_size=4)
    # step 0: id 0 [4, 0] -> APM [4, -4]; id 1 [0, 4] -> APM [-4, 4]; both confident (0.982)
    out, _ = _step(algo, [[4.0, 0.0], [0.0, 4.0]], [0, 1], step=0)
    assert out.logs["mask_rate"] == 1.0
    # step 1: id 0 [0, 3.5]: PM [-3.5, 3.5]; δ=1, t=1: APM = ([4,-4] + [-3.5,3.5])/2 = [0.25, -0.25]
    #   ŷ = 1, confident (sigmoid 3.5 = 0.971) but APM_ŷ = -0.25 < γ = 0 -> masked out
    # id 1 [0, 4]: APM stays [-4, 4] -> passes
    out, z_s = _step(algo, [[0.0, 3.5], [0.0, 4.0]], [0, 1], step=1)
    assert torch.allclose(algo.table.apm[0, :2], torch.tensor([[0.25, -0.25], [-4.0, 4.0]]))
    assert out.logs["mask_conf_rate"] == 1.0 and out.logs["mask_apm_rate"] == 0.5
    assert out.logs["mask_rate"] == 0.5
    # L_u = (0 + CE([0,0], 1)) / 2 = ln 2 / 2
    assert out.logs["unsup_loss"] == pytest.approx(math.log(2.0) / 2)
    out.loss.backward()
    assert torch.equal(z_s.grad[0, 0], torch.zeros(2))


def test_apm_warmup_uses_confidence_only():
    algo = build_algorithm("marginmatch", {"delta": 1.0, "apm_warmup": 5}, num_classes=2, pool_size=4)
    _step(algo, [[4.0, 0.0], [0.0, 4.0]], [0, 1], step=0)
    out, _ = _step(algo, [[0.0, 3.5], [0.0, 4.0]], [0, 1], step=1)
    assert out.logs["mask_apm_rate"] == 0.5  # the APM filter would reject id 0 ...
    assert out.logs["mask_rate"] == 1.0  # ... but before apm_warmup the mask is mask_conf


def test_duplicate_ids_count_one_visit():
    algo = build_algorithm("marginmatch", {"delta": 1.0}, num_classes=2, pool_size=4)
    # id 2 twice in one batch: state from its first occurrence only, one visit
    _step(algo, [[3.0, 0.0], [0.0, 1.0], [1.0, 0.0]], [2, 3, 2], step=0)
    assert algo.table.visits.tolist() == [0, 0, 1, 1]
    assert torch.allclose(algo.table.apm[0, 2], torch.tensor([3.0, -3.0]))


def _virtual(**overrides):
    cfg = {"gamma_mode": "virtual_class", "delta": 1.0, "threshold_fraction": 0.5, "min_threshold_visited": 5}
    cfg.update(overrides)
    return build_algorithm("marginmatch", cfg, num_classes=2, pool_size=10)


def test_virtual_class_gamma_is_the_stated_percentile():
    algo = _virtual(percentile=99.0)
    assert algo.num_outputs() == 3 and algo.num_outputs(4) == 5
    # fix the threshold set to ids 0-4 for this period (as a loaded checkpoint would)
    algo.is_threshold[:5] = True
    algo.last_resample_step.fill_(0)
    algo.threshold_period.fill_(100)
    # threshold examples 0-4: weak logits [0, 0, f] -> fake-class PM = f, f = -2, -1, 0, 1, 2
    # regular 5: [4, 0, 0] conf 0.982, PM_0 = 4; 6: [0, 4, 0], PM_1 = 4; 7: [1.5, 0, 0] conf 0.82, PM_0 = 1.5
    z_w = [[0, 0, -2.0], [0, 0, -1.0], [0, 0, 0.0], [0, 0, 1.0], [0, 0, 2.0],
           [4.0, 0, 0], [0, 4.0, 0], [1.5, 0, 0]]
    out, z_s = _step(algo, z_w, list(range(8)), step=0, true=torch.tensor([-1] * 5 + [0, 1, 0]))
    # γ = 99th percentile of [-2, -1, 0, 1, 2] (linear): position 0.99 * 4 = 3.96 -> 1 + 0.96 = 1.96
    # (dividing the percentile by 100 twice would give the 0.99th: -1.9604)
    assert out.logs["gamma"] == pytest.approx(1.96)
    assert algo.threshold_visits[:5].tolist() == [1] * 5
    assert algo.table.visits.tolist() == [0] * 5 + [1, 1, 1, 0, 0]  # threshold examples stay out of APM
    # regular mask: ids 5, 6 pass (APM 4 ≥ 1.96, confident), id 7 fails both -> 2/3
    assert out.logs["mask_rate"] == pytest.approx(2 / 3)
    assert out.logs["pseudo_label_acc"] == 1.0 and out.logs["pseudo_label_count"] == 2.0
    assert out.logs["threshold_examples_in_batch"] == 5.0
    # threshold examples: CE(z_s = 0, fake) = ln 3 with weight = regular mask rate 2/3
    # L_u = (ln3 + ln3 + 0 + 5 * 2/3 * ln3) / 8 = (2/3) ln 3
    assert out.logs["threshold_loss_weight"] == pytest.approx(2 / 3)
    assert out.logs["unsup_loss"] == pytest.approx(2 / 3 * math.log(3.0), rel=1e-6)
    out.loss.backward()
    # a threshold example's strong view is pushed towards the fake class (index 2)
    # grad = weight * (softmax - onehot(2)) / 8 = 2/3 * ([1/3, 1/3, -2/3]) / 8
    assert torch.allclose(z_s.grad[0, 0], torch.tensor([1 / 36, 1 / 36, -1 / 18]))


def test_virtual_gamma_waits_for_enough_visited_and_other_percentiles():
    algo = _virtual(percentile=75.0)
    algo.is_threshold[:5] = True
    algo.last_resample_step.fill_(0)
    algo.threshold_period.fill_(100)
    _step(algo, [[0, 0, -2.0], [0, 0, -1.0], [0, 0, 0.0], [0, 0, 1.0]], [0, 1, 2, 3], step=0)
    assert algo.gamma.item() == 0.0  # 4 visited < min_threshold_visited = 5: γ unchanged
    _step(algo, [[0, 0, 2.0]], [4], step=1)
    assert algo.gamma.item() == pytest.approx(1.0)  # 75th of [-2, -1, 0, 1, 2]: position 3 -> 1


def test_threshold_examples_schedule_and_rng_state():
    algo = _virtual(threshold_fraction=0.3, threshold_period=2, apm_warmup=1, threshold_stop_step=5)
    z_w = torch.zeros(4, 3)
    _step(algo, z_w, [0, 1, 2, 3], step=0)
    assert not algo.is_threshold.any()  # before apm_warmup: no threshold examples
    _step(algo, z_w, [0, 1, 2, 3], step=1)
    first = algo.is_threshold.clone()
    assert int(first.sum()) == 3 and algo.last_resample_step.item() == 1
    rng_after_first = algo.rng_state.clone()
    _step(algo, z_w, [0, 1, 2, 3], step=2)
    assert torch.equal(algo.is_threshold, first)  # same period
    _step(algo, z_w[:1], [9], step=3)
    assert algo.last_resample_step.item() == 3 and int(algo.is_threshold.sum()) == 3
    assert not torch.equal(algo.rng_state, rng_after_first)
    # the new set's fake-class APM restarts: only id 9 can have been visited in this period
    visited = (algo.threshold_visits > 0).nonzero().flatten().tolist()
    assert visited == ([9] if bool(algo.is_threshold[9]) else [])
    _step(algo, z_w[:1], [0], step=5)
    assert not algo.is_threshold.any()  # stopped


def test_virtual_class_period_defaults_to_one_pass_over_the_pool():
    algo = _virtual(threshold_fraction=0.1)
    _step(algo, torch.zeros(4, 3), [0, 1, 2, 3], step=0)
    assert algo.threshold_period.item() == 3  # ceil(10 / 4)


def test_virtual_class_predict_logits_drops_fake_class():
    algo = _virtual()
    logits = torch.tensor([[[1.0, 2.0, 9.0]]])
    assert torch.equal(algo.predict_logits(logits), torch.tensor([[1.0, 2.0]]))


def test_virtual_class_needs_enough_pool():
    with pytest.raises(ValueError, match="threshold_fraction"):
        build_algorithm("marginmatch", {"gamma_mode": "virtual_class"}, num_classes=2, pool_size=50)
