"""Pseudo-margins, the APM update with per-example visit counts, and the duplicate-id rule."""

from __future__ import annotations

import pytest
import torch

from guardmatch.algorithms import APMTable, first_occurrence, gather_heads, pseudo_margins


def test_pseudo_margins_by_hand():
    z = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.0, 1.0], [1.0, 1.0, -3.0]])
    # row 0: arg-max c0 leads the runner-up 0.5 by 1.5; c1: 0.5 - 2 = -1.5; c2: -1 - 2 = -3
    # row 1: arg-max c2 leads 0 by 1; c0 and c1: 0 - 1 = -1
    # row 2: a tie between c0 and c1 gives both margin 0; c2: -3 - 1 = -4
    expected = torch.tensor([[1.5, -1.5, -3.0], [-1.0, -1.0, 1.0], [0.0, 0.0, -4.0]])
    assert torch.equal(pseudo_margins(z), expected)


def test_pseudo_margins_keep_leading_dims():
    z = torch.randn(3, 5, 2)
    pm = pseudo_margins(z)
    assert pm.shape == z.shape
    # with two classes PM_0 = z0 - z1 = -PM_1
    assert torch.allclose(pm[..., 0], z[..., 0] - z[..., 1])
    assert torch.allclose(pm[..., 1], -pm[..., 0])


def test_apm_update_two_visits_with_delta():
    table = APMTable(num_heads=1, pool_size=3, num_outputs=2, delta=0.997)
    # step 1: ids 0 and 1, both with weak logits [2, 0.5] -> PM = [1.5, -1.5]
    #   t = 0: weight δ/(1+0) = 0.997 -> APM = 0.997 * [1.5, -1.5] = [1.4955, -1.4955]
    table.update(torch.tensor([[[2.0, 0.5], [2.0, 0.5]]]), torch.tensor([0, 1]))
    assert torch.allclose(table.apm[0, 0], torch.tensor([1.4955, -1.4955]))
    assert table.visits.tolist() == [1, 1, 0]
    # step 2: only id 1, logits [0, 1] -> PM = [-1, 1]
    #   t = 1: weight 0.997/2 = 0.4985 -> APM_0 = 0.4985*(-1) + 0.5015*1.4955 = 0.25149325
    table.update(torch.tensor([[[0.0, 1.0]]]), torch.tensor([1]))
    assert torch.allclose(table.apm[0, 1], torch.tensor([0.25149325, -0.25149325]))
    # id 0 was not visited again: unchanged, one visit; id 2 never visited
    assert torch.allclose(table.apm[0, 0], torch.tensor([1.4955, -1.4955]))
    assert table.visits.tolist() == [1, 2, 0]
    assert table.last_labels.tolist() == [[0, 1, -1]]
    assert torch.equal(table.apm[0, 2], torch.zeros(2))


def test_apm_delta_one_is_running_mean_and_heads_are_separate():
    table = APMTable(num_heads=2, pool_size=1, num_outputs=2, delta=1.0)
    # head 0 sees PM [1.5, -1.5] then [-1, 1]: mean [0.25, -0.25]
    # head 1 sees PM [-4, 4] then [-2, 2]: mean [-3, 3]
    table.update(torch.tensor([[[2.0, 0.5]], [[0.0, 4.0]]]), torch.tensor([0]))
    table.update(torch.tensor([[[0.0, 1.0]], [[0.0, 2.0]]]), torch.tensor([0]))
    assert torch.allclose(table.apm[:, 0], torch.tensor([[0.25, -0.25], [-3.0, 3.0]]))
    assert table.visits.tolist() == [2]  # one visit per step, shared by the heads
    assert table.last_labels.tolist() == [[1], [1]]
    assert torch.allclose(table.lookup(torch.tensor([0]), torch.tensor([[0], [1]])), torch.tensor([[0.25], [3.0]]))


def test_first_visit_is_not_near_zero_with_a_large_pool():
    # reference bug 4: smoothing by the global epoch leaves APM ≈ 0; per-example visits do not
    table = APMTable(num_heads=1, pool_size=100_000, num_outputs=2, delta=0.997)
    table.update(torch.tensor([[[3.0, 0.0]]]), torch.tensor([99_999]))
    assert table.apm[0, 99_999, 0].item() == pytest.approx(0.997 * 3.0)


def test_first_occurrence_rule_for_duplicate_ids():
    ids = torch.tensor([3, 1, 3, 0, 1])
    # distinct ids sorted: 0 (pos 3), 1 (pos 1), 3 (pos 0)
    assert first_occurrence(ids).tolist() == [3, 1, 0]
    assert first_occurrence(torch.tensor([], dtype=torch.long)).tolist() == []


def test_gather_heads_concatenates_along_examples():
    a, b = torch.randn(3, 2, 2), torch.randn(3, 4, 2)
    # a dim-0 gather of rank 0 (holding a) with rank 1 (holding b), as accelerate's gather does
    out = gather_heads(a, lambda t: torch.cat([t, b.transpose(0, 1)]))
    assert out.shape == (3, 6, 2)
    assert torch.equal(out, torch.cat([a, b], dim=1))

