"""Routing: strategy scores worked out by hand, ranking, route partitions, scoring with real (tiny) models, APM."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from review_fixtures import tiny_model

from guardmatch.algorithms import build_algorithm
from guardmatch.config import TrainConfig
from guardmatch.data.splits import make_split
from guardmatch.review.routing import (
    STRATEGIES,
    EmptyPoolError,
    PoolScores,
    StrategyUnavailableError,
    attach_apm,
    get_strategy,
    pseudo_mask,
    route,
    run_pool_ids,
    score_pool,
)


def _scores(p, head_p=None, apm=None) -> PoolScores:
    p = np.asarray(p, dtype=float)
    hp = None
    if head_p is not None:
        hp = np.asarray(head_p, dtype=float)
        hp = np.stack([1 - hp, hp], -1)
    return PoolScores(ids=[f"x{i}" for i in range(len(p))], probs=np.stack([1 - p, p], 1), head_probs=hp,
                      apm=None if apm is None else np.asarray(apm, dtype=float), model_version="m")


def test_registry_has_every_strategy():
    assert set(STRATEGIES.names()) == {"least_confidence", "margin", "entropy", "head_disagreement", "apm_instability",
                               "random"}
    with pytest.raises(KeyError, match="unknown strategy"):
        get_strategy("bald")


def test_uncertainty_scores_by_hand():
    s = _scores([0.5, 0.9, 0.2])
    np.testing.assert_allclose(get_strategy("least_confidence").scores(s), [0.5, 0.1, 0.2])
    np.testing.assert_allclose(get_strategy("margin").scores(s), [0.0, -0.8, -0.6])
    ent = [math.log(2), -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)), -(0.2 * math.log(0.2) + 0.8 * math.log(0.8))]
    np.testing.assert_allclose(get_strategy("entropy").scores(s), ent)
    for name in ("least_confidence", "margin", "entropy"):
        assert get_strategy(name).rank(s, 3, 0).tolist() == [0, 2, 1]


def test_head_disagreement_by_hand():
    # item 0: heads vote 1,1,0 (one minority vote); item 1: unanimous but spread; item 2: unanimous and equal
    s = _scores([0.6, 0.7, 0.8], head_p=[[0.9, 0.6, 0.8], [0.6, 0.9, 0.8], [0.3, 0.6, 0.8]])
    scores = get_strategy("head_disagreement").scores(s)
    hp = s.head_probs  # [H, N, C]
    mean = hp.mean(0)
    kl = (hp * (np.log(hp) - np.log(mean)[None])).sum(-1).mean(0)
    np.testing.assert_allclose(scores, [1 + kl[0] / (1 + kl[0]), kl[1] / (1 + kl[1]), 0.0], atol=1e-12)
    assert get_strategy("head_disagreement").rank(s, 3, 0).tolist() == [0, 1, 2]
    with pytest.raises(StrategyUnavailableError, match="multi-head"):
        get_strategy("head_disagreement").scores(_scores([0.5]))


def test_apm_instability_ranks_unstable_first_and_unvisited_last():
    # APM of the predicted class: -1.5 (history says the other class), 0.1 (flip-flopping), 3.0 (stable), NaN twice
    s = _scores([0.9, 0.6, 0.95, 0.5, 0.99], apm=[-1.5, 0.1, 3.0, np.nan, np.nan])
    order = get_strategy("apm_instability").rank(s, 5, 0).tolist()
    assert order == [0, 1, 2, 3, 4]  # unvisited after all visited, among themselves by margin (0.5 before 0.99)
    with pytest.raises(StrategyUnavailableError, match="APM"):
        get_strategy("apm_instability").scores(_scores([0.5]))


def test_rank_breaks_ties_at_random_but_reproducibly_and_respects_candidates():
    s = _scores([0.5] * 50)
    a = get_strategy("margin").rank(s, 10, 1)
    assert a.tolist() == get_strategy("margin").rank(s, 10, 1).tolist()
    assert a.tolist() != list(range(10))  # ties do not follow file order
    r = get_strategy("random").rank(s, 50, 3)
    assert sorted(r.tolist()) == list(range(50))
    c = get_strategy("margin").rank(_scores([0.5, 0.9, 0.55, 0.6]), 2, 0, candidates=[1, 3])
    assert c.tolist() == [3, 1]
    with pytest.raises(EmptyPoolError):
        get_strategy("margin").rank(s, 5, 0, candidates=[])


def test_route_partitions_and_filters_pseudo_labels():
    p = [0.99, 0.98, 0.52, 0.5, 0.97, 0.02, 0.6, 0.99]
    heads = [[0.99, 0.98, 0.5, 0.5, 0.97, 0.02, 0.6, 0.99]] * 2 + [[0.99, 0.3, 0.5, 0.5, 0.97, 0.02, 0.6, 0.99]]
    apm = [2.0, 2.0, 0.0, 0.0, -0.5, 1.0, 0.0, np.nan]
    s = _scores(p, head_p=heads, apm=apm)
    r = route(s, pseudo_threshold=0.95, review_budget=2, strategy="margin", exclude=[6])
    assert r.review.tolist() == [3, 2]
    # item 1: a head votes unharmful; item 4: its APM says the history disagrees; item 6 excluded
    assert r.pseudo.tolist() == [0, 5, 7]
    assert r.untouched.tolist() == [1, 4]
    every = np.concatenate([r.pseudo, r.review, r.untouched]).tolist()
    assert sorted(every) == [0, 1, 2, 3, 4, 5, 7]
    assert len(r.priority) == 2 and r.priority[0] >= r.priority[1]
    assert pseudo_mask(s, 0.95).tolist() == [True, False, False, False, False, True, False, True]
    none = route(s, pseudo_threshold=1.0, review_budget=0, strategy="random")
    assert len(none.pseudo) == 0 and len(none.review) == 0 and len(none.untouched) == 8
    with pytest.raises(ValueError, match="pseudo_threshold"):
        route(s, pseudo_threshold=0.3)


def test_score_pool_matches_predict_proba_and_gives_head_probs(review_slice):
    pool = [ex.unlabeled() for ex in review_slice[:40]]
    model = tiny_model(seed=1)
    model.config.temperature = 1.7
    s = score_pool(model, pool, "prompt", batch_size=16, model_version="v1")
    np.testing.assert_allclose(s.p_harmful, model.score([e.prompt for e in pool]), atol=1e-5)
    assert s.head_probs is None and s.ids == [e.id for e in pool]
    multi = tiny_model(num_heads=3, num_outputs=3, seed=2)
    sm = score_pool(multi, pool, batch_size=7)
    assert sm.head_probs.shape == (3, 40, 2) and sm.probs.shape == (40, 2)
    np.testing.assert_allclose(sm.probs.sum(1), 1.0)
    picks = get_strategy("head_disagreement").rank(sm, 5, 0)
    assert len(set(picks.tolist())) == 5
    with pytest.raises(ValueError, match="prompt classifier"):
        score_pool(model, pool, "response")


def _marginmatch_run(tmp_path, examples):
    """A real MarginMatch run laid out like run_training's (manifest, config, fingerprint, final state)."""
    from guardmatch.training.run import _to_yaml, run_fingerprint
    from guardmatch.training.trainer import Trainer

    split = make_split(examples, 40, seed=0)
    cfg = TrainConfig.model_validate({"output_dir": str(tmp_path / "mm"), "algorithm": "marginmatch",
                                      "data": {"labels": 40, "suite": "none"},
                                      "optim": {"max_steps": 6, "batch_size": 8, "mu": 2}, "save_every": 100})
    algo = build_algorithm("marginmatch", {"threshold": 0.0}, num_classes=2, pool_size=len(split.unlabeled))
    views = [[ex] for ex in split.unlabeled]  # identity views: enough to visit the pool and fill the APM table
    Trainer(cfg, tiny_model(seed=3), algo, split.labeled, split.unlabeled, views).train()
    run = tmp_path / "mm"
    split.save_manifest(run / "split_manifest.json")
    (run / "config.yaml").write_text(_to_yaml(cfg))
    fp = run_fingerprint(cfg, split, split.unlabeled)
    (run / "run.json").write_text(json.dumps({"provenance": {"fingerprint": fp}}))
    return run, split, algo


def test_apm_from_a_real_marginmatch_run_maps_rows_to_ids(tmp_path, review_slice):
    run, split, algo = _marginmatch_run(tmp_path, review_slice[:100])
    ids = run_pool_ids(run, len(split.unlabeled))
    assert ids == [ex.id for ex in split.unlabeled]
    model = tiny_model(seed=3)
    scores = score_pool(model, split.unlabeled)
    attach_apm(scores, run)
    apm = algo.table.apm.double().numpy()
    visits = algo.table.visits.numpy()
    k = int(np.flatnonzero(visits > 0)[0])
    assert scores.apm[k] == pytest.approx(apm[0, k, scores.predicted[k]])
    assert np.isnan(scores.apm[visits == 0]).all()
    assert scores.info["apm_visited"] == int((visits > 0).sum())
    ranked = get_strategy("apm_instability").rank(scores, 10, 0)
    assert len(ranked) == 10
    # a manifest whose pool order was edited no longer reproduces the fingerprint: refused, not mis-mapped
    man = json.loads((run / "split_manifest.json").read_text())
    man["unlabeled_ids"] = man["unlabeled_ids"][::-1]
    (run / "split_manifest.json").write_text(json.dumps(man))
    with pytest.raises(ValueError, match="cannot map the APM table"):
        attach_apm(scores, run)


def test_apm_needs_an_algorithm_state(tiny_run):
    # a supervised run has an (empty) algorithm state: no APM table, a clear error
    with pytest.raises(StrategyUnavailableError, match="no APM table"):
        attach_apm(_scores([0.5]), tiny_run)
    with pytest.raises(FileNotFoundError, match="apm_instability needs a MarginMatch or MultiMatch run"):
        attach_apm(_scores([0.5]), tiny_run / "model")


def test_score_pool_keeps_model_mode(review_slice):
    model = tiny_model()
    model.train()
    score_pool(model, review_slice[:4])
    assert model.training
    assert torch.is_grad_enabled()


def test_score_pool_from_cached_lower_layers_matches_full_forward(tmp_path, review_slice):
    from guardmatch.features import FeatureStore

    pool = [ex.unlabeled() for ex in review_slice[:30]]
    model = tiny_model(num_heads=3, num_outputs=2, seed=4)
    full = score_pool(model, pool, batch_size=8)
    store = FeatureStore(model, "top_layers", 1, root=tmp_path / "feats")
    cached = score_pool(model, pool, batch_size=8, features=store)
    np.testing.assert_allclose(cached.probs, full.probs, atol=2e-3)  # fp16 cache
    np.testing.assert_allclose(cached.head_probs, full.head_probs, atol=2e-3)
    again = score_pool(model, pool, batch_size=8, features=store)  # second time: read from the cache only
    np.testing.assert_array_equal(again.probs, cached.probs)
