"""Per-segment metrics (hand-computed) and the ingest / purge / audit / keygen commands."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from guardmatch import security as sec
from guardmatch.cli.main import app
from guardmatch.data.example import Example
from guardmatch.evaluation.slices import format_markdown, metrics_by_segment, to_dataframe


def _ex(i: int, label: int, region: str | None) -> Example:
    meta = {} if region is None else {"region": region}
    return Example(id=str(i), prompt=f"p{i}", label=label, source="logs", metadata=meta)


def test_metrics_by_segment_matches_hand_computed_values():
    # EU: labels 1,1,0,0 probs .9,.2,.8,.1 -> tp1 fn1 fp1 tn1: P=R=F1=0.5
    # US: labels 1,0 probs .7,.3 -> perfect; missing region: one negative predicted negative
    examples = [_ex(0, 1, "EU"), _ex(1, 1, "EU"), _ex(2, 0, "EU"), _ex(3, 0, "EU"), _ex(4, 1, "US"), _ex(5, 0, "US"),
                _ex(6, 0, None)]
    probs = [0.9, 0.2, 0.8, 0.1, 0.7, 0.3, 0.4]
    rows = metrics_by_segment(examples, probs, threshold=0.5, segment_field="region", min_n=3)
    by = {r["value"]: r for r in rows}
    assert [r["value"] for r in rows] == ["ALL", "EU", "US", "<missing>"]
    assert (by["EU"]["n"], by["EU"]["positives"], by["EU"]["f1"], by["EU"]["precision"], by["EU"]["recall"]) == (4, 2, 0.5, 0.5, 0.5)
    assert (by["US"]["f1"], by["US"]["small"]) == (1.0, True)
    assert by["<missing>"]["positives"] == 0 and by["<missing>"]["f1"] == 0.0
    # ALL: tp 2, fp 1, fn 1 -> P = R = F1 = 2/3
    assert math.isclose(by["ALL"]["f1"], 2 / 3) and by["ALL"]["n"] == 7
    assert list(to_dataframe(rows)["value"]) == ["ALL", "EU", "US", "<missing>"]
    assert "| EU | 4 | 2 | 0.500 |" in format_markdown(rows)
    assert metrics_by_segment(examples, probs, 0.5, "source")[1]["value"] == "logs"


def test_metrics_by_segment_rejects_unlabeled_and_mismatched_input():
    with pytest.raises(ValueError, match="2 examples but 1 scores"):
        metrics_by_segment([_ex(0, 1, "EU"), _ex(1, 0, "EU")], [0.1], 0.5, "region")
    with pytest.raises(ValueError, match="unlabeled"):
        metrics_by_segment([Example(id="u", prompt="x")], [0.1], 0.5, "region")


def test_cli_ingest_audit_purge_keygen(tmp_path, monkeypatch):
    monkeypatch.setenv(sec.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(sec.AUDIT_USER_ENV, "tester")
    monkeypatch.delenv(sec.KEY_ENV, raising=False)
    log = tmp_path / "chat.jsonl"
    log.write_text("\n".join([
        json.dumps({"id": "a", "product": "web", "messages": [{"role": "user", "content": "mail me: x@y.org"},
                                                                {"role": "assistant", "content": "noted"}]}),
        "{oops",
    ]) + "\n")
    pool = tmp_path / "pool.jsonl"
    runner = CliRunner()
    res = runner.invoke(app, ["ingest", str(log), "--out", str(pool), "--quiet", "--json"])
    assert res.exit_code == 0, res.output
    manifest = json.loads(res.stdout)
    assert manifest["counts"]["kept"] == 2 and manifest["counts"]["redactions"] == {"EMAIL": 2}
    assert manifest["counts"]["skipped"] == {"malformed JSON": 1}

    derived = tmp_path / "pool.embeddings"
    derived.mkdir()
    (derived / "x.safetensors").write_bytes(b"0")
    sec.register_derived(pool, derived, "embeddings")
    sec.audit_log("export", tmp_path / "export.csv", 2)

    res = runner.invoke(app, ["audit", "--json", "--action", "export"])
    assert res.exit_code == 0 and [r["who"] for r in json.loads(res.stdout)] == ["tester"]
    res = runner.invoke(app, ["purge", str(pool), "--dry-run"])
    assert res.exit_code == 0 and pool.exists() and "would remove" in res.stdout
    res = runner.invoke(app, ["purge", str(pool), "--yes", "--json"])
    assert res.exit_code == 0, res.output
    removed = json.loads(res.stdout)["removed"]
    assert str(derived) in removed and not derived.exists() and not pool.exists()
    res = runner.invoke(app, ["purge", str(pool), "--yes"])
    assert res.exit_code == 2
    assert [r["action"] for r in sec.read_audit_log()] == ["ingest", "export", "purge"]

    res = runner.invoke(app, ["keygen"])
    assert res.exit_code == 0 and sec.AtRestCipher(res.stdout.strip()).key_id
    res = runner.invoke(app, ["ingest", str(tmp_path / "missing.jsonl"), "--out", str(pool), "-q"])
    assert res.exit_code == 2 and "no such file" in " ".join(res.output.split())
