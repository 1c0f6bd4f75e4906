"""The whole loop through the CLI on a real (tiny) run: route, export, review, import, retrain, route again."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from guardmatch.cli.main import app
from guardmatch.review.store import ReviewStore
from guardmatch.storage.lineage import derived_from

runner = CliRunner()


def _flat(text: str) -> str:
    return " ".join(text.split())  # rich wraps long messages


def _ok(args: list[str]) -> str:
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output + str(res.exception)
    return res.stdout


@pytest.mark.slow
def test_loop_route_review_retrain_route(tmp_path, tiny_run, review_slice):
    truth = {ex.id: ex.label_name for ex in review_slice}
    db = tmp_path / "queue.db"
    out = json.loads(_ok(["review", "route", str(db), "--run", str(tiny_run), "--strategy", "margin", "--budget", "10",
                          "--pseudo-threshold", "0.99", "--json"]))
    assert out["added"] == {"seed": 40, "pool": 120} and out["review"] == 10 and out["scored"] == 120
    assert out["store"]["labels"]["seed"] == 40 and out["model_version"].startswith("run@")
    train_file = tiny_run.parent / "train.jsonl"
    assert str(db.resolve()) in {d["path"] for d in derived_from(train_file)}  # `guardmatch purge` finds it

    _ok(["review", "export", str(db), str(tmp_path / "q.jsonl")])
    rows = [json.loads(x) for x in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and all(r["model_version"] == out["model_version"] for r in rows)
    for r in rows:
        r["label"] = truth[r["id"]]
    rows[0]["label"] = "not sure"
    (tmp_path / "bad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = runner.invoke(app, ["review", "import", str(db), str(tmp_path / "bad.jsonl"), "--reviewer", "ann"])
    assert res.exit_code == 2 and "row 1, field 'label': unknown label 'not sure'" in _flat(res.output)
    rows[0]["label"] = truth[rows[0]["id"]]
    (tmp_path / "done.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    imp = json.loads(_ok(["review", "import", str(db), str(tmp_path / "done.jsonl"), "--reviewer", "ann", "--json"]))
    assert imp["stored"] == 10
    assert "already imported" in _ok(["review", "import", str(db), str(tmp_path / "done.jsonl"), "--reviewer", "ann"])

    r1 = tmp_path / "round1"
    _ok(["retrain", str(db), "-o", str(r1), "--set", "optim.max_steps=2"])
    with ReviewStore.open(db) as s:
        (rnd,) = s.rounds()
        assert rnd["status"] == "done" and rnd["labels_used"]["by_provenance"] == {"seed": 40, "human": 10}
        assert rnd["model_version"].startswith("round1@") and rnd["pool_size"] == 110
        assert rnd["config"]["data"]["labels"] == "all" and rnd["config"]["data"]["train"].endswith("labels.jsonl")
    labeled = [json.loads(x) for x in (r1 / "round_data" / "labels.jsonl").read_text().splitlines()]
    assert len(labeled) == 50 and all(x["label"] == truth[x["id"]] for x in labeled)
    assert sum(x["metadata"]["provenance"] == "human" for x in labeled) == 10
    pool = [json.loads(x) for x in (r1 / "round_data" / "pool.jsonl").read_text().splitlines()]
    assert len(pool) == 110 and all(x["label"] is None for x in pool) and "hidden_label" not in json.dumps(pool)
    assert json.loads((r1 / "split_manifest.json").read_text())["budget"] == "all"
    # same labels, same directory: not trained twice
    assert "already trained these labels" in _flat(runner.invoke(app, ["retrain", str(db), "-o", str(r1)]).output)

    # next round routes with the new model; the seed is not re-added as seed
    out2 = json.loads(_ok(["review", "route", str(db), "--run", str(r1), "--strategy", "random", "--budget", "5",
                           "--pseudo-threshold", "1", "--json"]))
    assert "seed" not in out2["added"] and out2["scored"] == 110 and out2["review"] == 5
    assert out2["model_version"].startswith("round1@")
    with ReviewStore.open(db) as s:
        s.add_review(s.pending_ids()[0], "harmful", "ann")
    res = runner.invoke(app, ["retrain", str(db), "-o", str(r1)])
    assert res.exit_code == 2 and "trained on other labels" in _flat(res.output)
    status = json.loads(_ok(["review", "status", str(db), "--json"]))
    assert status["queue"]["total"] == 15 and status["labels"]["human"] == 11 and status["rounds"] == 1


def test_cli_bad_input_messages(tmp_path, tiny_run):
    res = runner.invoke(app, ["review", "route", str(tmp_path / "q.db")])
    assert res.exit_code == 2 and "give --run" in _flat(res.output)
    res = runner.invoke(app, ["review", "status", str(tmp_path / "missing.db")])
    assert res.exit_code == 2 and "no review store here" in _flat(res.output)
    res = runner.invoke(app, ["review", "route", str(tmp_path / "q.db"), "--run", str(tiny_run),
                              "--strategy", "apm_instability", "--budget", "3"])
    assert res.exit_code == 2 and "no APM table" in _flat(res.output)
    res = runner.invoke(app, ["review", "route", str(tmp_path / "q.db"), "--run", str(tiny_run),
                              "--strategy", "head_disagreement", "--budget", "3"])
    assert res.exit_code == 2 and "multi-head" in _flat(res.output)
    res = runner.invoke(app, ["review", "resolve", str(tmp_path / "q.db"), "nope", "--label", "harmful"])
    assert res.exit_code == 2 and "unknown item id 'nope'" in _flat(res.output)
    ReviewStore.open(tmp_path / "empty.db").close()
    res = runner.invoke(app, ["retrain", str(tmp_path / "empty.db"), "-o", str(tmp_path / "r")])
    assert res.exit_code == 2 and "no base config stored" in _flat(res.output)
    cfg = tmp_path / "base.yaml"
    cfg.write_text("algorithm: supervised\n")
    res = runner.invoke(app, ["retrain", str(tmp_path / "empty.db"), "-c", str(cfg), "-o", str(tmp_path / "r")])
    assert res.exit_code == 2 and "only 0 usable label(s)" in _flat(res.output)
