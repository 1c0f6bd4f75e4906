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


def test_length_buckets_keep_epochs_and_group_similar_lengths():
    import numpy as np

    from guardmatch.training.loaders import StepSampler

    lengths = tuple(int(x) for x in np.random.default_rng(0).integers(5, 500, 64))
    plain = StepSampler(64, 4, seed=1)
    bucketed = StepSampler(64, 4, seed=1, lengths=lengths, bucket=4)
    # every item once per epoch (16 steps of 4), in batches of similar length
    epoch = np.concatenate([bucketed.indices(s) for s in range(16)])
    assert sorted(epoch.tolist()) == list(range(64))
    spread = lambda s: np.mean([np.ptp(np.take(lengths, s.indices(i))) for i in range(16)])  # noqa: E731
    assert spread(bucketed) < spread(plain) / 2  # windows of 16 uniform lengths: ~3x less spread
    # a window of 4 batches = 16 items: sorted inside, so each batch holds 4 neighbours in length
    perm = bucketed._permutation(0)
    window = np.random.default_rng([1, 0, 0]).permutation(64)[:16]
    first_window_batches = [tuple(sorted(b)) for b in np.split(window[np.argsort(np.take(lengths, window),
                                                                                 kind="stable")], 4)]
    got = [tuple(sorted(perm[i : i + 4])) for i in range(0, 64, 4)]
    assert all(b in got for b in first_window_batches)
    assert StepSampler(64, 4, seed=1, lengths=lengths, bucket=4)._permutation(3).tolist() == \
        bucketed._permutation(3).tolist()  # a pure function of (seed, epoch): resume needs no state
