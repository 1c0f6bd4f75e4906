"""The SQLite review store: schema, idempotent items, label provenance, conflicts, durability, bad input."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from guardmatch.data.example import Example, UnknownLabelError
from guardmatch.review.routing import PoolScores, route
from guardmatch.review.store import SCHEMA_VERSION, ReviewStore, StoreError
from guardmatch.storage.files import file_mode


def _pool(n: int = 12) -> list[Example]:
    return [Example(f"p{i}", f"pool prompt number {i}", metadata={"hidden_label": i % 2, "lang": "en"})
            for i in range(n)]


def _seed() -> list[Example]:
    return [Example(f"s{i}", f"seed prompt {i}", label=i % 2) for i in range(4)]


@pytest.fixture()
def store(tmp_path):
    s = ReviewStore.open(tmp_path / "q.db", task="prompt")
    s.add_items(_seed(), seed=True)
    s.add_items(_pool())
    yield s
    s.close()


def _route(store: ReviewStore, p: list[float], budget: int = 3, threshold: float = 0.9) -> int:
    ids = [f"p{i}" for i in range(len(p))]
    probs = np.asarray(p)
    scores = PoolScores(ids, np.stack([1 - probs, probs], 1), model_version="m0")
    exclude = [k for k, i in enumerate(ids) if i in store.routing_exclusions()]
    return store.add_routing(scores, route(scores, threshold, budget, "margin", exclude=exclude), budget=budget)


def test_new_store_schema_mode_and_reopen(tmp_path, store):
    assert store.status()["schema_version"] == SCHEMA_VERSION
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert file_mode(store.path) == 0o600
    store.add_review("p0", "harmful", "alice")
    for suffix in ("-wal", "-shm"):
        wal = store.path.with_name(store.path.name + suffix)
        if wal.exists():
            assert file_mode(wal) == 0o600
    store.close()
    with ReviewStore.open(tmp_path / "q.db", create=False) as again:
        assert again.labels()["p0"] == (1, "human")
        assert again.integrity_check() == "ok"
        with pytest.raises(StoreError, match="prompt task, not response"):
            ReviewStore.open(tmp_path / "q.db", task="response")


def test_items_are_idempotent_and_hidden_labels_never_stored(store):
    assert store.add_items(_pool()) == {"added": 0, "existing": 12, "seed_labels": 0}
    assert "hidden_label" not in store.item("p1").metadata and store.item("p1").metadata["lang"] == "en"
    raw = store.conn.execute("SELECT metadata FROM items").fetchall()
    assert all("hidden_label" not in r[0] for r in raw)
    with pytest.raises(StoreError, match="different text"):
        store.add_items([Example("p1", "another text entirely")])
    assert store.item("p1").prompt == "pool prompt number 1"


def test_seed_labels_and_pseudo_labels_have_provenance(store):
    labels = store.labels()
    assert labels["s1"] == (1, "seed") and labels["s0"] == (0, "seed")
    _route(store, [0.99, 0.02, 0.5, 0.58, 0.6, 0.7, 0.8, 0.3, 0.45, 0.51, 0.93, 0.2])
    labels = store.labels()
    assert labels["p0"] == (1, "pseudo") and labels["p1"] == (0, "pseudo") and labels["p10"] == (1, "pseudo")
    assert store.queue_ids() == ["p2", "p9", "p8"]
    assert store.label_detail("p0")["detail"]["model_version"] == "m0"
    # a person overrides a pseudo-label; the provenance says so
    store.add_review("p0", "unharmful", "alice", note="sarcasm, not a threat")
    assert store.labels()["p0"] == (0, "human")
    # the next routing replaces the old pseudo-labels and never re-queues labeled or queued items
    _route(store, [0.5] * 12, budget=2, threshold=0.9)
    assert "p1" not in store.labels()
    assert set(store.queue_ids()[3:]).isdisjoint({"p0", "p2", "p9", "p8"})


def test_review_rules_correction_conflict_resolution(store):
    _route(store, [0.5] * 12, budget=4)
    q = store.queue_ids()
    first = store.add_review(q[0], "harmful", "alice")
    assert first.label == "harmful" and first.provenance == "human" and first.conflict is None
    # the same reviewer changing their mind is a correction, not a conflict
    store.add_review(q[0], "unharmful", "alice")
    assert store.labels()[q[0]] == (0, "human")
    # another reviewer disagreeing: detected and reported; the item has no label until resolved
    out = store.add_review(q[0], "harmful", "bob")
    assert out.label is None and out.conflict["votes"] == {"alice": "unharmful", "bob": "harmful"}
    assert q[0] not in store.labels()
    assert [c["item_id"] for c in store.conflicts()] == [q[0]]
    assert store.progress()["conflicts"] == 1
    assert len(store.reviews(q[0])) == 3  # nothing overwritten
    res = store.resolve(q[0], "harmful", "lead", note="policy 4.2")
    assert res.label == "harmful" and store.conflicts() == []
    assert store.conflicts(None)[0]["status"] == "resolved"
    # a reviewer disagreeing with the audited seed label is a conflict too
    s_out = store.add_review("s1", "unharmful", "carol")
    assert s_out.conflict["votes"] == {"(seed)": "harmful", "carol": "unharmful"} and "s1" not in store.labels()
    # skip: recorded, no label, the item leaves this reviewer's queue only
    store.add_review(q[1], "skip", "alice")
    assert q[1] not in store.labels()
    assert store.next_item("alice").item_id == q[2]
    assert store.next_item("bob").item_id == q[1]
    prog = store.progress("alice")
    assert prog == {"total": 4, "labeled": 1, "conflicts": 0, "skipped": 1, "remaining": 2}


def test_bad_reviews_write_nothing(store):
    before = store.conn.execute("SELECT COUNT(*) FROM reviews").fetchone()[0]
    with pytest.raises(UnknownLabelError, match="unknown label 'maybe'"):
        store.add_review("p0", "maybe", "alice")
    with pytest.raises(UnknownLabelError, match="empty label"):
        store.add_review("p0", "", "alice")
    with pytest.raises(KeyError, match="unknown item id 'nope'"):
        store.add_review("nope", "harmful", "alice")
    with pytest.raises(ValueError, match="reviewer"):
        store.add_review("p0", "harmful", "  ")
    with pytest.raises(ValueError, match="resolution needs a label"):
        store.resolve("p0", "skip", "lead")
    assert store.conn.execute("SELECT COUNT(*) FROM reviews").fetchone()[0] == before
    # every spelling the data loaders accept works
    assert store.add_review("p3", "unsafe", "alice").label == "harmful"
    assert store.add_review("p4", 0, "alice").label == "unharmful"


def test_routing_with_unknown_ids_is_refused_whole(store):
    scores = PoolScores(["p0", "ghost"], np.array([[0.5, 0.5], [0.5, 0.5]]), model_version="m")
    with pytest.raises(StoreError, match="not items of this store"):
        store.add_routing(scores, route(scores, 0.9, 1, "random"), budget=1)
    assert store.routings() == [] and store.queue_ids() == []


def test_not_a_store_and_future_schema(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all, just text" * 100)
    with pytest.raises(StoreError, match="not a guardmatch review store"):
        ReviewStore.open(junk)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as c:
        c.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="not a guardmatch review store"):
        ReviewStore.open(other)
    with ReviewStore.open(tmp_path / "new.db") as s:
        s.conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="newer than this guardmatch"):
        ReviewStore.open(tmp_path / "new.db")
    with pytest.raises(FileNotFoundError):
        ReviewStore.open(tmp_path / "missing.db", create=False)


def test_rounds_are_recorded(store):
    rid = store.start_round(output_dir="runs/r1", labels_file="runs/r1/labels.jsonl", labels_hash="abc",
                            labels_used={"total": 4}, pool_size=12, config={"algorithm": "supervised"})
    store.finish_round(rid, model_dir="runs/r1/model", model_version="r1@x", metrics={"wildguardtest": {"f1": 0.7}})
    (r,) = store.rounds()
    assert r["status"] == "done" and r["metrics"]["wildguardtest"]["f1"] == 0.7 and r["labels_used"] == {"total": 4}
