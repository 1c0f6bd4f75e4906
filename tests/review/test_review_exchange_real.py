"""Argilla and Label Studio exchange against files written by the real packages (no server).

Argilla 2.x: records are real ``rg.Record`` / ``rg.Response`` objects, written by the writers that
``records.to_json`` / ``dataset.to_disk`` / ``records.to_list(flatten=True)`` /
``records.to_datasets()`` call (``JsonIO.to_json``, ``GenericIO.to_list``, ``HFDatasetsIO.to_datasets``:
the dataset methods only add the server query that fetches the records). Our export is checked with
Argilla's own ``records.log`` mapper and settings loader. Label Studio: tasks are built with
label-studio-sdk's ``LabelInterface`` (from our exported labeling config) and ``TaskValue``, and its
``Converter`` writes the JSON, JSON-MIN and CSV exports.
"""

from __future__ import annotations

import json
import uuid
import warnings

import numpy as np
import pytest

from guardmatch.data.example import Example
from guardmatch.data.validation import DataError
from guardmatch.review.exchange import export_queue, import_reviews
from guardmatch.review.routing import PoolScores, route
from guardmatch.review.store import ReviewStore

U1, U2, U3 = (uuid.UUID(int=k) for k in (1, 2, 3))


@pytest.fixture()
def store(tmp_path):
    s = ReviewStore.open(tmp_path / "q.db", task="prompt")
    s.add_items([Example("s0", "seed prompt", label=0), Example("s1", "seed prompt two", label=1)], seed=True)
    pool = [Example(f"p{i}", f"prompt {i}: how do I \"quote\", commas, and\nnewlines?") for i in range(8)]
    s.add_items(pool)
    p = np.array([0.2, 0.44, 0.55, 0.9, 0.52, 0.1, 0.65, 0.4])
    scores = PoolScores([e.id for e in pool], np.stack([1 - p, p], 1), model_version="round-0@abc123")
    s.add_routing(scores, route(scores, 0.99, 4, "margin"), budget=4)
    yield s
    s.close()


# ------------------------------------------------------------------------------------------ argilla


@pytest.fixture()
def rg():
    argilla = pytest.importorskip("argilla")

    class OfflineArgilla(argilla.Argilla):
        """A client that never connects: settings and datasets need one to exist, nothing here calls it."""

        def _validate_connection(self) -> None:
            pass

    client = OfflineArgilla(api_url="http://127.0.0.1:9", api_key="offline", retries=0, timeout=1)
    argilla.Argilla._set_default(client)
    yield argilla
    argilla.Argilla._default_client = None


def _argilla_records(rg, store):
    """What reviewers left in Argilla: 3 submitted, 1 draft, 1 discarded, a note."""
    by_id = {i: store.item(i).prompt for i in store.queue_ids()}  # p4, p2, p1, p7

    def rec(i, responses):
        return rg.Record(id=i, fields={"prompt": by_id[i]}, responses=responses)

    return [
        rec("p4", [rg.Response("label", "harmful", user_id=U1, status="submitted"),
                   rg.Response("note", "clear intent", user_id=U1, status="submitted")]),
        rec("p2", [rg.Response("label", "unharmful", user_id=U1, status="submitted"),
                   rg.Response("label", "unharmful", user_id=U2, status="submitted")]),
        rec("p1", [rg.Response("label", "harmful", user_id=U2, status="draft")]),
        rec("p7", [rg.Response("label", None, user_id=U3, status="discarded")]),
    ]


def test_argilla_flattened_forms_keep_status(tmp_path, store, rg):
    from argilla.records._io import GenericIO, HFDatasetsIO

    records = _argilla_records(rg, store)
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps(GenericIO.to_list(records, flatten=True)))  # records.to_list(flatten=True)
    rep = import_reviews(store, flat)
    assert rep["format"] == "argilla" and rep["stored"] == 4 and rep["skips"] == 1  # 3 labels + 1 skip
    assert rep["drafts_ignored"] == 1 and rep["warnings"] == []
    assert store.labels(("human",)) == {"p4": (1, "human"), "p2": (0, "human")}
    assert store.reviews("p1") == []  # a draft is not a label
    assert [r["action"] for r in store.reviews("p7")] == ["skip"]  # a discard is a skip
    (r4,) = store.reviews("p4")
    assert r4["reviewer"] == str(U1) and r4["note"] == "clear intent"

    # records.to_datasets() (Hub exports are this dataset), saved as JSONL and as parquet
    settings = rg.Settings(fields=[rg.TextField("prompt")],
                           questions=[rg.LabelQuestion("label", labels=["harmful", "unharmful"]),
                                      rg.TextQuestion("note", required=False)])
    dataset = rg.Dataset(name="queue", settings=settings)
    hf = HFDatasetsIO.to_datasets(records, dataset)
    for name in ("hf.jsonl", "hf.parquet"):
        other = ReviewStore.open(tmp_path / f"{name}.db", task="prompt")
        other.add_items([store.item(i) for i in ("p4", "p2", "p1", "p7")])
        (hf.to_json if name.endswith("jsonl") else hf.to_parquet)(str(tmp_path / name))
        rep = import_reviews(other, tmp_path / name)
        assert (rep["stored"], rep["skips"], rep["drafts_ignored"]) == (4, 1, 1), name
        assert other.labels(("human",)) == {"p4": (1, "human"), "p2": (0, "human")}
        other.close()


def test_argilla_to_json_and_to_disk(tmp_path, store, rg):
    from argilla.records._io import JsonIO

    records = _argilla_records(rg, store)
    # dataset.to_disk(dir): settings.to_json + records.to_json (the writers it calls)
    disk = tmp_path / "disk"
    (disk / ".argilla").mkdir(parents=True)
    rg.Settings(fields=[rg.TextField("prompt")],
                questions=[rg.LabelQuestion("label", labels=["harmful", "unharmful"])]).to_json(
        disk / ".argilla" / "settings.json")
    JsonIO.to_json(records, disk / "records.json")
    rep = import_reviews(store, disk)
    # to_json drops the response status: a value reads as submitted (the draft too), none as a discard
    assert rep["format"] == "argilla" and rep["stored"] == 5 and rep["skips"] == 1
    assert rep["warnings"] and "cannot be told" in rep["warnings"][0]
    assert [r["action"] for r in store.reviews("p7")] == ["skip"]
    assert import_reviews(store, disk)["already_imported"]


def test_argilla_export_is_what_records_log_reads(tmp_path, store, rg):
    from argilla.records._mapping import IngestedRecordMapper

    info = export_queue(store, tmp_path / "queue.json", "argilla")
    settings_path = tmp_path / "queue.argilla_settings.json"
    assert info["extra_files"] == [str(settings_path)]
    settings = rg.Settings.from_json(settings_path)
    assert [q.name for q in settings.questions] == ["label", "note"]
    dataset = rg.Dataset(name="queue", settings=settings)
    mapper = IngestedRecordMapper(dataset, user_id=U1)  # what dataset.records.log(dicts) runs
    exported = json.loads((tmp_path / "queue.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Keys [...] will be ignored" would fail here
        recs = [mapper(d) for d in exported]
    assert [r.id for r in recs] == store.queue_ids()
    r = recs[2]  # p1, p_harmful 0.44
    assert r.fields["prompt"] == store.item("p1").prompt and r.suggestions["label"].value == "unharmful"
    assert r.metadata["p_harmful"] == pytest.approx(0.44) and r.metadata["confidence"] == pytest.approx(0.56)
    assert r.metadata["model_version"] == "round-0@abc123" and r.metadata["strategy"] == "margin"
    assert len(r.responses) == 0  # the prediction is a suggestion, never a response
    # importing the untouched export back stores nothing: suggestions are not reviews
    rep = import_reviews(store, tmp_path / "queue.json", reviewer="someone")
    assert rep["format"] == "argilla" and rep["stored"] == 0 and store.labels(("human",)) == {}


def test_files_with_nothing_recognisable_are_refused(tmp_path, store):
    (tmp_path / "x.jsonl").write_text(json.dumps({"text": "a", "verdict": "harmful"}) + "\n")
    with pytest.raises(DataError, match="nothing recognisable"):
        import_reviews(store, tmp_path / "x.jsonl")
    (tmp_path / "y.json").write_text(json.dumps([{"foo": 1}]))
    with pytest.raises(DataError, match="nothing recognisable"):
        import_reviews(store, tmp_path / "y.json", "argilla")
    assert store.conn.execute("SELECT COUNT(*) FROM imports").fetchone()[0] == 0


# ------------------------------------------------------------------------------------- label studio


def _ls_export(tmp_path, store):
    """Our tasks, annotated with label-studio-sdk objects; returns (JSON export path, config path)."""
    pytest.importorskip("label_studio_sdk")
    from label_studio_sdk.label_interface import LabelInterface
    from label_studio_sdk.label_interface.objects import AnnotationValue, TaskValue

    export_queue(store, tmp_path / "tasks.json", "labelstudio")
    config = tmp_path / "tasks.label_config.xml"
    li = LabelInterface(config.read_text())  # our labeling config parses with Label Studio's own parser
    label, note = li.get_control("label"), li.get_control("note")
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    ann = {  # by item: (completed_by, choice or None = cancelled, note, created_at, extra)
        "p4": [({"id": 7, "email": "ann@example.org", "first_name": "Ann", "last_name": "Lee"},
                "unharmful", "quoted fiction", "2026-03-09T21:52:49Z", {})],
        "p2": [(8, None, None, "2026-03-09T10:00:00Z", {"created_username": " bob@example.org, 8"})],
        "p1": [(8, "harmful", None, "2026-03-09T10:00:00Z", {"created_username": " bob@example.org, 8"}),
               (9, "harmful", None, "2026-03-09T10:05:00Z", {})],
    }
    out = []
    for k, t in enumerate(tasks):
        anns = []
        for a_no, (who, choice, text, when, extra) in enumerate(ann.get(t["data"]["item_id"], []), 1):
            result = [] if choice is None else [label.label([choice])] + ([note.label(text=[text])] if text else [])
            v = AnnotationValue(completed_by=9, result=result, was_cancelled=choice is None).model_dump()
            v.update({"id": 10 * k + a_no, "completed_by": who, "created_at": when, "updated_at": when, **extra})
            anns.append(v)
        tv = TaskValue(data=t["data"], predictions=t.get("predictions", [])).model_dump()
        tv.update({"id": 100 + k, "annotations": anns})
        out.append(tv)
    path = tmp_path / "ls-export.json"
    path.write_text(json.dumps(out))
    return path, config


def test_labelstudio_json_export_keeps_reviewer_names(tmp_path, store):
    path, _ = _ls_export(tmp_path, store)
    rep = import_reviews(store, path)
    assert rep["format"] == "labelstudio" and rep["stored"] == 4 and rep["skips"] == 1
    (r,) = store.reviews("p4")
    assert r["reviewer"] == "ann@example.org" and r["note"] == "quoted fiction" and r["label"] == "unharmful"
    assert [x["reviewer"] for x in store.reviews("p2")] == ["bob@example.org"]  # from created_username
    assert {x["reviewer"] for x in store.reviews("p1")} == {"bob@example.org", "labelstudio-user-9"}


@pytest.mark.parametrize("fmt", ["JSON_MIN", "CSV"])
def test_labelstudio_json_min_and_csv_exports(tmp_path, store, fmt):
    path, config = _ls_export(tmp_path, store)
    from label_studio_sdk.converter import Converter

    conv = Converter(config=config.read_text(), project_dir=str(tmp_path), download_resources=False)
    out = tmp_path / fmt.lower()
    conv.convert(str(path), str(out), fmt, is_dir=False, sep=",")
    produced = out / ("result.csv" if fmt == "CSV" else "result.json")
    rep = import_reviews(store, produced)
    # Label Studio leaves cancelled annotations out of JSON-MIN and CSV: 3 reviews, no skip
    assert rep["format"] == "labelstudio" and rep["stored"] == 3 and rep["skips"] == 0
    assert store.labels(("human",))["p4"] == (0, "human") and store.labels(("human",))["p1"] == (1, "human")
    (r,) = store.reviews("p4")
    assert r["reviewer"] == "ann@example.org" and r["note"] == "quoted fiction"
    assert {x["reviewer"] for x in store.reviews("p1")} == {"labelstudio-user-8", "labelstudio-user-9"}
    assert import_reviews(store, produced)["already_imported"]
