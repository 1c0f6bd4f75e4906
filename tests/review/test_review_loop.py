"""The review loop from Python (``route_store``, ``retrain``) on a real (tiny) supervised run."""

from __future__ import annotations

import shutil

import pytest
from safetensors import SafetensorError

from guardmatch.model import GuardClassifier
from guardmatch.review.loop import route_store
from guardmatch.review.retrain import base_config, retrain
from guardmatch.review.routing import StrategyUnavailableError, get_strategy, score_pool
from guardmatch.review.store import ReviewStore


def test_route_store_fills_scores_and_queues(tmp_path, tiny_run, review_slice):
    db = tmp_path / "queue.db"
    report = route_store(db, run=tiny_run, strategy="margin", budget=10, pseudo_threshold=0.99, rng_seed=0)
    assert report.added == {"seed": 40, "pool": 120} and report.scored == 120
    assert report.review == 10 and report.pseudo + report.review + report.untouched == 120
    assert report.strategy == "margin" and report.model_version.startswith("run@")
    # a supervised run keeps an algorithm state without an APM table: said so, not hidden
    assert "no APM table" in report.apm_unavailable
    with ReviewStore.open(db) as store:
        assert store.status()["labels"]["seed"] == 40 and store.get_meta("base_run") == str(tiny_run)
        queue = store.queue_ids()
        pool = [ex for ex in store.items() if ex.id not in store.labels(("seed",))]
    assert len(queue) == 10 and report.store["queue"]["total"] == 10
    # the queue is the 10 smallest top-two margins of the run's model over the pool
    scores = score_pool(GuardClassifier.from_pretrained(tiny_run / "model"), pool, "prompt")
    margin = get_strategy("margin").scores(scores)
    by_id = dict(zip(scores.ids, margin))
    assert sorted((by_id[i] for i in queue), reverse=True) == pytest.approx(sorted(margin, reverse=True)[:10])
    assert set(queue) <= {ex.id for ex in review_slice}

    again = route_store(db, run=tiny_run, strategy="random", budget=5, pseudo_threshold=1.0, rng_seed=1)
    assert again.added == {"seed": 0, "pool": 0} and again.scored == 110  # the queued 10 are not routed again
    assert again.review == 5 and again.pseudo == 0 and again.routing_id == report.routing_id + 1
    with ReviewStore.open(db) as store:
        assert len(store.queue_ids()) == 15 and store.queue_ids()[:10] == queue


def test_route_store_from_model_and_pool_file(tmp_path, tiny_model_dir, review_slice):
    from review_fixtures import write_jsonl

    pool = write_jsonl(tmp_path / "pool.jsonl", [ex.unlabeled() for ex in review_slice[:12]])
    report = route_store(tmp_path / "q.db", model=tiny_model_dir, pools=[pool], budget=3, pseudo_threshold=1.0)
    assert report.added == {str(pool): 12} and report.scored == 12 and report.review == 3
    assert report.apm_unavailable is None  # no run: APM not looked for
    with ReviewStore.open(tmp_path / "q.db") as store:
        assert store.task.value == "prompt" and len(store.queue_ids()) == 3 and not store.labels()


def test_route_store_errors_propagate(tmp_path, tiny_run, tiny_model_dir):
    with pytest.raises(ValueError, match="give --run"):
        route_store(tmp_path / "a.db")
    with pytest.raises(KeyError, match="unknown strategy"):
        route_store(tmp_path / "a.db", run=tiny_run, strategy="bald")
    with pytest.raises(ValueError, match="apm_instability needs --run"):
        route_store(tmp_path / "a.db", model=tiny_model_dir, strategy="apm_instability")
    with pytest.raises(StrategyUnavailableError, match="no APM table"):
        route_store(tmp_path / "a.db", run=tiny_run, strategy="apm_instability", budget=3)
    # an algorithm state that cannot be read is a failure, not "no APM": it is no longer swallowed
    broken = tmp_path / "broken-run"
    shutil.copytree(tiny_run, broken)
    (broken / "algorithm.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(SafetensorError):
        route_store(tmp_path / "b.db", run=broken, strategy="margin", budget=3)


@pytest.mark.slow
def test_python_loop_route_review_retrain(tmp_path, tiny_run, review_slice):
    truth = {ex.id: ex.label for ex in review_slice}
    db = tmp_path / "queue.db"
    route_store(db, run=tiny_run, budget=6, pseudo_threshold=1.0)
    with ReviewStore.open(db) as store:
        for item_id in store.pending_ids():
            store.add_review(item_id, truth[item_id], "ann")
        cfg = base_config(store, {"optim.max_steps": 2})
        assert cfg.optim.max_steps == 2 and cfg.algorithm == "supervised"
        result = retrain(store, cfg)
        assert result.output_dir == tmp_path / "queue-rounds" / "round-1"
        assert result.labels_used["by_provenance"] == {"seed": 40, "human": 6}
        (rnd,) = store.rounds()
        assert rnd["status"] == "done" and rnd["pool_size"] == 114
    labels = result.labels_file.read_text().splitlines()
    assert len(labels) == 46 and result.metrics["_train"]["steps"] == 2
    nxt = route_store(db, run=result.output_dir, budget=4, pseudo_threshold=1.0)
    assert "seed" not in nxt.added and nxt.scored == 114 and nxt.model_version.startswith("round-1@")


def test_base_config_needs_a_stored_run(tmp_path):
    with ReviewStore.open(tmp_path / "empty.db", task="prompt") as store:
        with pytest.raises(ValueError, match="no base config stored"):
            base_config(store)
