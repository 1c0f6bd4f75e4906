"""Pass-based schedules: steps from epochs over the labels and passes over the pool (hand-checked)."""

from __future__ import annotations

from guardmatch.config import OptimConfig
from guardmatch.training.optim import scheduled_steps


def test_fixed_steps_without_passes():
    assert scheduled_steps(OptimConfig(max_steps=150), 200, 3000) == 150


def test_epochs_over_labels():
    cfg = OptimConfig(epochs=10, batch_size=16)
    assert scheduled_steps(cfg, 200, 0) == 125          # 10 * 200 / 16 = 125
    assert scheduled_steps(cfg, 2000, 0) == 1250
    assert scheduled_steps(cfg, 201, 0) == 126          # ceil(125.6)
    assert scheduled_steps(cfg, 200, 0, processes=2) == 63  # ceil(62.5): each process draws its own batch


def test_pool_passes_and_the_longer_schedule():
    ssl = OptimConfig(epochs=10, pool_passes=5, batch_size=16, mu=2)
    assert scheduled_steps(ssl, 200, 3193) == 499       # pool: ceil(5 * 3193 / 32) = 499 > labels: 125
    assert scheduled_steps(ssl, 2000, 1393) == 1250     # labels: 1250 > pool: ceil(5 * 1393 / 32) = 218
    assert scheduled_steps(OptimConfig(pool_passes=5, max_steps=300), 200, 0) == 300  # no pool, no epochs
