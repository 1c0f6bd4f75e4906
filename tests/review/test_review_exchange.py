"""Exchange files: export formats (JSONL, CSV, Argilla v2, Label Studio), import round trips, bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from guardmatch.data.example import Example
from guardmatch.data.validation import DataError
from guardmatch.review.exchange import export_queue, import_reviews
from guardmatch.review.routing import PoolScores, route
from guardmatch.review.store import ReviewStore
from guardmatch.storage.audit import read_audit_log
from guardmatch.storage.files import file_mode


@pytest.fixture()
def store(tmp_path):
    s = ReviewStore.open(tmp_path / "q.db", task="prompt")
    s.add_items([Example("s0", "seed prompt", label=0), Example("s1", "seed prompt two", label=1)], seed=True)
    pool = [Example(f"p{i}", f"prompt {i}: <b>how</b> do I \"quote\", commas, and\nnewlines?") for i in range(8)]
    s.add_items(pool)
    p = np.array([0.2, 0.44, 0.55, 0.9, 0.52, 0.1, 0.65, 0.4])
    scores = PoolScores([e.id for e in pool], np.stack([1 - p, p], 1), model_version="round-0@abc123")
    s.add_routing(scores, route(scores, 0.99, 4, "margin"), budget=4)
    yield s
    s.close()


def test_exports_have_the_documented_shape_and_are_audited(tmp_path, store):
    queue = store.queue_ids()
    assert queue == ["p4", "p2", "p1", "p7"]
    info = export_queue(store, tmp_path / "q.jsonl", "jsonl")
    rows = [json.loads(line) for line in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == queue and info["rows"] == 4
    assert rows[0]["p_harmful"] == pytest.approx(0.52) and rows[0]["predicted"] == "harmful"
    assert rows[2]["confidence"] == pytest.approx(0.56) and rows[2]["predicted"] == "unharmful"
    assert rows[0]["model_version"] == "round-0@abc123" and rows[0]["strategy"] == "margin" and rows[0]["label"] is None
    assert file_mode(tmp_path / "q.jsonl") == 0o600

    export_queue(store, tmp_path / "q.csv", "csv")
    with open(tmp_path / "q.csv", newline="") as fh:
        crow = list(csv.DictReader(fh))
    assert crow[0]["prompt"] == store.item("p4").prompt  # quotes, commas and newlines survive

    export_queue(store, tmp_path / "q.argilla.json", "argilla")
    recs = json.loads((tmp_path / "q.argilla.json").read_text())
    rec = recs[2]  # flat, for dataset.records.log(): fields, metadata and the suggestion under the question name
    assert rec == {"id": "p1", "prompt": store.item("p1").prompt, "label": "unharmful",
                   "p_harmful": pytest.approx(0.44), "confidence": pytest.approx(0.56), "priority": rec["priority"],
                   "strategy": "margin", "model_version": "round-0@abc123"}
    settings = json.loads((tmp_path / "q.argilla_settings.json").read_text())
    assert [f["name"] for f in settings["fields"]] == ["prompt"] and settings["questions"][0]["name"] == "label"

    info = export_queue(store, tmp_path / "tasks.json", "labelstudio")
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    pred = tasks[0]["predictions"][0]
    assert tasks[0]["data"]["item_id"] == "p4" and pred["model_version"] == "round-0@abc123"
    assert pred["score"] == pytest.approx(0.52)
    assert pred["result"] == [{"from_name": "label", "to_name": "prompt", "type": "choices",
                               "value": {"choices": ["harmful"]}}]
    config = (tmp_path / "tasks.label_config.xml").read_text()
    assert '<Choices name="label" toName="prompt"' in config and '<Text name="prompt" value="$prompt"/>' in config
    assert info["extra_files"] == [str(tmp_path / "tasks.label_config.xml")]

    audit = [r for r in read_audit_log() if r["action"] == "export"]
    assert [r["format"] for r in audit] == ["jsonl", "csv", "argilla", "labelstudio"]
    assert all(r["rows"] == 4 and r["who"] == "review-tests" for r in audit)
    with pytest.raises(ValueError, match="unknown export format"):
        export_queue(store, tmp_path / "x", "xml")


def _fill_flat(path, out, labels: dict[str, str], reviewer: str | None = "alice", fmt: str = "jsonl"):
    if fmt == "jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        for r in rows:
            r["label"] = labels.get(r["id"])
            r["reviewer"] = reviewer
        out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        for r in rows:
            r["label"] = labels.get(r["id"], "")
            r["reviewer"] = reviewer or ""
        with open(out, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return out


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_flat_round_trip_and_double_import(tmp_path, store, fmt):
    export_queue(store, tmp_path / f"q.{fmt}", fmt)
    done = _fill_flat(tmp_path / f"q.{fmt}", tmp_path / f"done.{fmt}", {"p4": "harmful", "p2": "unsafe", "p1": "skip"},
                      fmt=fmt)
    rep = import_reviews(store, done)
    assert rep["stored"] == 3 and rep["skips"] == 1 and rep["unreviewed"] == 1 and rep["format"] == fmt
    assert store.labels(("human",)) == {"p4": (1, "human"), "p2": (1, "human")}
    snapshot = store.conn.execute("SELECT * FROM reviews ORDER BY id").fetchall()
    again = import_reviews(store, done)
    assert again["already_imported"] and again["stored"] == 0
    assert store.conn.execute("SELECT * FROM reviews ORDER BY id").fetchall() == snapshot
    # the same decisions in another file (a re-export with one more row) are stored once
    more = _fill_flat(tmp_path / f"q.{fmt}", tmp_path / f"more.{fmt}",
                      {"p4": "harmful", "p2": "unsafe", "p1": "skip", "p7": "unharmful"}, fmt=fmt)
    rep3 = import_reviews(store, more)
    assert rep3["stored"] == 1 and rep3["duplicates"] == 3
    assert store.labels()["p7"] == (0, "human")


def test_argilla_round_trip_with_two_annotators_and_a_conflict(tmp_path, store):
    """Responses as Argilla's API / Hub records carry them (with status); real writers: test_review_exchange_real."""
    export_queue(store, tmp_path / "a.json", "argilla")
    recs = [{"id": r["id"], "fields": {"prompt": r["prompt"]}, "suggestions": {}, "metadata": {}}
            for r in json.loads((tmp_path / "a.json").read_text())]
    u1, u2 = "9f1c2d4e-0000-4000-8000-000000000001", "9f1c2d4e-0000-4000-8000-000000000002"
    recs[0]["responses"] = {"label": [{"value": "harmful", "user_id": u1, "status": "submitted"},
                                      {"value": "unharmful", "user_id": u2, "status": "submitted"}],
                            "note": [{"value": "borderline", "user_id": u2, "status": "submitted"}]}
    recs[1]["responses"] = {"label": [{"value": "harmful", "user_id": u1, "status": "submitted"}]}
    recs[2]["responses"] = {"label": [{"value": "unharmful", "user_id": u1, "status": "discarded"}]}
    recs[3]["responses"] = {"label": [{"value": "unharmful", "user_id": u1, "status": "draft"}]}
    (tmp_path / "a.done.json").write_text(json.dumps(recs))
    rep = import_reviews(store, tmp_path / "a.done.json")
    assert rep["format"] == "argilla" and rep["stored"] == 4 and rep["skips"] == 1 and rep["drafts_ignored"] == 1
    assert rep["conflicts"] == [{"item_id": "p4", "votes": {u1: "harmful", u2: "unharmful"}, "row": 1}]
    assert "p4" not in store.labels() and store.labels()["p2"] == (1, "human")
    notes = {r["reviewer"]: r["note"] for r in store.reviews("p4")}
    assert notes == {u1: None, u2: "borderline"}
    assert "p7" not in store.labels() and store.reviews("p7") == []  # a draft is not a decision


def test_labelstudio_round_trip(tmp_path, store):
    export_queue(store, tmp_path / "t.json", "labelstudio")
    tasks = json.loads((tmp_path / "t.json").read_text())
    for k, t in enumerate(tasks):
        t["id"] = 100 + k  # Label Studio's own task ids
    tasks[0]["annotations"] = [{"id": 1, "completed_by": {"id": 7, "email": "ann@example.org"},
                                "result": [{"from_name": "label", "to_name": "prompt", "type": "choices",
                                            "value": {"choices": ["unharmful"]}},
                                           {"from_name": "note", "to_name": "prompt", "type": "textarea",
                                            "value": {"text": ["quoted fiction"]}}],
                                "was_cancelled": False, "created_at": "2026-03-09T21:52:49.513742Z",
                                "updated_at": "2026-03-09T22:16:08.746926Z"}]
    tasks[1]["annotations"] = [{"id": 2, "completed_by": 8, "result": [], "was_cancelled": True}]
    tasks[2]["annotations"] = [
        {"id": 3, "completed_by": 8, "result": [{"from_name": "label", "type": "choices",
                                                 "value": {"choices": ["harmful"]}}],
         "created_at": "2026-03-09T10:00:00Z"},
        {"id": 4, "completed_by": 8, "result": [{"from_name": "label", "type": "choices",
                                                 "value": {"choices": ["unharmful"]}}],
         "created_at": "2026-03-09T11:00:00Z"},
    ]
    (tmp_path / "t.done.json").write_text(json.dumps(tasks))
    rep = import_reviews(store, tmp_path / "t.done.json")
    assert rep["format"] == "labelstudio" and rep["stored"] == 4 and rep["conflicts"] == []
    assert store.labels()["p4"] == (0, "human")
    (r,) = store.reviews("p4")
    assert r["reviewer"] == "ann@example.org" and r["note"] == "quoted fiction"
    assert r["created_at"] == "2026-03-09T22:16:08.746926+00:00"
    assert [x["action"] for x in store.reviews("p2")] == ["skip"]
    # annotator 8 corrected themselves an hour later: the later annotation is their label
    assert store.labels()["p1"] == (0, "human") and rep["relabeled"][0]["to"] == "unharmful"


def test_bad_files_are_refused_whole_with_file_row_and_field(tmp_path, store):
    export_queue(store, tmp_path / "q.jsonl", "jsonl")
    bad = _fill_flat(tmp_path / "q.jsonl", tmp_path / "bad.jsonl", {"p4": "harmful", "p2": "probably", "p1": "skip"})
    with open(bad, "a") as fh:
        fh.write(json.dumps({"id": "ghost", "label": "harmful", "reviewer": "alice"}) + "\n")
        fh.write(json.dumps({"id": "p6", "label": "harmful"}) + "\n")
        fh.write(json.dumps({"id": "p6", "prompt": "some other text", "label": "harmful", "reviewer": "x"}) + "\n")
        fh.write("{not json\n")
    with pytest.raises(DataError) as err:
        import_reviews(store, bad)
    text = str(err.value)
    assert "nothing imported" in text and "5 data problem(s)" in text
    assert "bad.jsonl, row 2, field 'label': unknown label 'probably'" in text
    assert "row 5, field 'id': unknown item id 'ghost'" in text
    assert "row 6, field 'reviewer': missing reviewer" in text
    assert "row 7, field 'prompt'" in text and "row 8: bad JSON" in text
    assert store.conn.execute("SELECT COUNT(*) FROM reviews").fetchone()[0] == 0
    assert store.conn.execute("SELECT COUNT(*) FROM imports").fetchone()[0] == 0
    # --skip-bad: the valid rows go in, the bad ones are reported
    rep = import_reviews(store, bad, errors="skip", reviewer="bulk")
    assert rep["stored"] == 3 and len(rep["problems"]) == 4
    assert store.labels(("human",)) == {"p4": (1, "human"), "p6": (1, "human")}
    # one reviewer, two different labels, no times: ambiguous, refused
    amb = tmp_path / "amb.jsonl"
    amb.write_text(json.dumps({"id": "p1", "label": "harmful", "reviewer": "dan"}) + "\n"
                   + json.dumps({"id": "p1", "label": "unharmful", "reviewer": "dan"}) + "\n")
    with pytest.raises(DataError, match="without times to tell which is the correction"):
        import_reviews(store, amb)
    (tmp_path / "x.txt").write_text("label,id\nharmful")
    with pytest.raises(DataError, match="cannot tell the format"):
        import_reviews(store, tmp_path / "x.txt")
    with pytest.raises(DataError, match="needs columns 'id' and 'label'"):
        (tmp_path / "c.csv").write_text("item,verdict\np1,harmful\n")
        import_reviews(store, tmp_path / "c.csv")


def test_reimport_for_another_reviewer_records_their_reviews(tmp_path, store):
    export_queue(store, tmp_path / "q.jsonl", "jsonl")
    done = _fill_flat(tmp_path / "q.jsonl", tmp_path / "done.jsonl", {"p4": "harmful", "p2": "unharmful"}, reviewer=None)
    first = import_reviews(store, done, reviewer="alice")
    assert first["stored"] == 2
    second = import_reviews(store, done, reviewer="bob")  # the same file, decided by someone else
    assert not second["already_imported"] and second["stored"] == 2
    assert import_reviews(store, done, reviewer="bob")["already_imported"]
    who = {r[0] for r in store.conn.execute("SELECT reviewer FROM reviews")}
    assert who == {"alice", "bob"}


def test_overlong_reviewer_name_is_a_row_problem(tmp_path, store):
    export_queue(store, tmp_path / "q.jsonl", "jsonl")
    done = _fill_flat(tmp_path / "q.jsonl", tmp_path / "done.jsonl", {"p4": "harmful"}, reviewer="x" * 100_000)
    with pytest.raises(DataError, match="reviewer name has 100,000 characters; at most 100"):
        import_reviews(store, done)
    with pytest.raises(ValueError, match="at most 100"):
        store.add_review("p4", "harmful", "y" * 101)
    assert store.conn.execute("SELECT COUNT(*) FROM reviews").fetchone()[0] == 0
