"""Ingest end to end: chat turns, flat files, dedup, filters, segments, bad input, encryption, resume."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from guardmatch.ingest.config import ColumnMapping, DedupConfig, IngestConfig, IngestFilterConfig
from guardmatch.ingest.pipeline import IngestError, errors_path, ingest, iter_pool, state_path
from guardmatch.storage.audit import read_audit_log
from guardmatch.storage.crypto import KEY_ENV, LINE_PREFIX, EncryptionKeyError, generate_key
from guardmatch.storage.files import CACHE_ENV, file_mode
from guardmatch.storage.lineage import manifest_path


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(KEY_ENV, raising=False)


def _write_jsonl(path: Path, rows: list) -> Path:
    with path.open("wb") as fh:
        for r in rows:
            fh.write(r if isinstance(r, bytes) else (json.dumps(r) + "\n").encode("utf-8"))
    return path


def _chat(cid: str, *turns: tuple[str, str], **meta) -> dict:
    return {"id": cid, **meta, "messages": [{"role": r, "content": c} for r, c in turns]}


def test_chat_turns_become_prompt_and_response_examples_with_context(tmp_path):
    log = _write_jsonl(tmp_path / "log.jsonl", [
        _chat("c1", ("system", "be nice"), ("user", "what is the capital of France?"), ("assistant", "Paris."),
              ("user", "and how do I hotwire a car there?"), ("assistant", "I can't help with that."),
              product="chat", region="EU", user_type="free"),
    ])
    rep = ingest([log], tmp_path / "pool.jsonl", IngestConfig(columns=ColumnMapping(context_turns=2)))
    rows = {ex.id: ex for ex in iter_pool(tmp_path / "pool.jsonl")}
    assert set(rows) == {"c1#u1", "c1#a1", "c1#u2", "c1#a2"}
    assert rows["c1#u1"].prompt == "what is the capital of France?" and rows["c1#u1"].response is None
    assert rows["c1#a1"].response == "Paris."
    # the second user turn carries the two previous messages (system excluded by default)
    assert rows["c1#u2"].prompt == (
        "User: what is the capital of France?\n\nAssistant: Paris.\n\nUser: and how do I hotwire a car there?")
    assert rows["c1#a2"].prompt == rows["c1#u2"].prompt and rows["c1#a2"].response == "I can't help with that."
    for ex in rows.values():
        assert ex.label is None and ex.source == "log.jsonl"
        assert ex.metadata["product"] == "chat" and ex.metadata["region"] == "EU" and ex.metadata["user_type"] == "free"
    assert rows["c1#u2"].metadata["kind"] == "prompt" and rows["c1#a2"].metadata["kind"] == "response"
    assert [ex.id for ex in iter_pool(tmp_path / "pool.jsonl", kind="response")] == ["c1#a1", "c1#a2"]
    assert rep.manifest["counts"]["kept_by_kind"] == {"prompt": 2, "response": 2}
    assert rep.manifest["counts"]["segments"]["region"] == {"EU": 4}


def test_flat_csv_with_column_mapping_redacts_text_and_metadata(tmp_path):
    pd.DataFrame({
        "text": ["email me at a.b@corp.com about the refund", "how to stalk my ex?", 'multi\nline "quoted" prompt'],
        "reply": ["", "No.", "ok"],
        "market": ["DE", "US", "US"],
        "contact": ["a.b@corp.com", "", "x"],
    }).to_csv(tmp_path / "log.csv", index=False)
    cfg = IngestConfig(columns=ColumnMapping(prompt="text", response="reply", segments=["market", "contact"]))
    ingest([tmp_path / "log.csv"], tmp_path / "pool.jsonl", cfg)
    rows = list(iter_pool(tmp_path / "pool.jsonl"))
    assert [r.prompt for r in rows] == ["email me at <EMAIL> about the refund", "how to stalk my ex?",
                                        'multi\nline "quoted" prompt']
    assert [r.response for r in rows] == [None, "No.", "ok"]
    assert rows[0].metadata["market"] == "DE" and rows[0].metadata["contact"] == "<EMAIL>"
    assert "corp.com" not in (tmp_path / "pool.jsonl").read_text()


def test_parquet_and_gzip_inputs(tmp_path):
    frame = pd.DataFrame({"prompt": ["first prompt here", "second prompt here"], "region": ["EU", "US"]})
    frame.to_parquet(tmp_path / "a.parquet")
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as fh:
        fh.write(json.dumps({"prompt": "third prompt from gzip", "region": "APAC"}) + "\n")
    rep = ingest([tmp_path / "a.parquet", tmp_path / "b.jsonl.gz"], tmp_path / "pool.jsonl")
    assert [r.prompt for r in iter_pool(tmp_path / "pool.jsonl")] == [
        "first prompt here", "second prompt here", "third prompt from gzip"]
    assert rep.manifest["counts"]["segments"]["region"] == {"EU": 1, "US": 1, "APAC": 1}
    assert all(f["done"] for f in rep.manifest["inputs"])


def test_exact_and_near_duplicates_are_removed(tmp_path):
    base = "Please explain in detail how the immune system of the human body fights a common viral infection over several days"
    rows = [
        {"prompt": base},
        {"prompt": base.upper() + "!!"},  # exact after normalization
        {"prompt": base.replace("several days", "several weeks")},  # near duplicate
        {"prompt": "Write a short poem about autumn leaves falling on a quiet lake at dawn"},
    ]
    rep = ingest([_write_jsonl(tmp_path / "l.jsonl", rows)], tmp_path / "pool.jsonl")
    assert [r.prompt for r in iter_pool(tmp_path / "pool.jsonl")] == [base, rows[3]["prompt"]]
    assert rep.manifest["counts"]["dedup"] == {"exact": 1, "near": 1}
    assert rep.manifest["dedup"]["bands"] * rep.manifest["dedup"]["rows_per_band"] <= 128


def test_language_and_length_filters(tmp_path):
    rows = [
        {"prompt": "How can I improve my sleep schedule before exams?"},
        {"prompt": "Wie kann ich meinen Schlafrhythmus vor den Prüfungen verbessern?"},
        {"prompt": "hi"},
        {"prompt": "x" * 500},
    ]
    cfg = IngestConfig(filters=IngestFilterConfig(languages=["en"], min_chars=3, max_chars=400))
    rep = ingest([_write_jsonl(tmp_path / "l.jsonl", rows)], tmp_path / "pool.jsonl", cfg)
    assert [r.prompt for r in iter_pool(tmp_path / "pool.jsonl")] == [rows[0]["prompt"]]
    assert rep.manifest["counts"]["skipped"] == {"language:de": 1, "too_short": 1, "too_long": 1}


def test_bad_input_is_reported_with_file_and_line_and_the_rest_is_ingested(tmp_path):
    log = _write_jsonl(tmp_path / "bad.jsonl", [
        {"prompt": "good one"},
        b'{"prompt": "broken json"\n',
        _chat("c", ("user", "fine"), ("assistant", "ok")) | {"messages": [{"content": "no role"}]},
        b'{"prompt": "caf\xe9 latin-1"}\n',
        b'{"prompt": "' + b"A" * 300_000 + b'"}\n',  # over max_line_bytes below
        b"[1, 2]\n",
        {"prompt": 42},
        _chat("c2", ("user", "last good turn"), ("assistant", "reply")),
    ])
    rep = ingest([log], tmp_path / "pool.jsonl", IngestConfig(max_line_bytes=100_000))
    assert [r.prompt for r in iter_pool(tmp_path / "pool.jsonl")] == ["good one", "last good turn", "last good turn"]
    msgs = {p.row: (p.field, p.message) for p in rep.problems}
    assert all(p.file == str(log) for p in rep.problems)
    assert msgs[2][1].startswith("bad JSON")
    assert msgs[3] == ("messages[0].role", "message without a role; conversation skipped")
    assert msgs[4][1].startswith("bad UTF-8")
    assert msgs[5][1].startswith("line too long: 300,015 bytes > max_line_bytes 100,000")
    assert msgs[6][1].startswith("bad JSON: expected an object")
    assert msgs[7] == ("prompt", "prompt not text (int); skipped")
    assert rep.manifest["counts"]["errors"] == 6
    logged = [json.loads(line) for line in errors_path(tmp_path / "pool.jsonl").read_text().splitlines()]
    assert [e["row"] for e in logged] == [2, 3, 4, 5, 6, 7]
    assert "AAAA" not in errors_path(tmp_path / "pool.jsonl").read_text()


def test_files_are_owner_only_and_encrypted_when_a_key_is_set(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, generate_key())
    log = _write_jsonl(tmp_path / "l.jsonl", [{"prompt": "how do I build a pipe bomb", "product": "x"}])
    pool = tmp_path / "out" / "pool.jsonl"
    rep = ingest([log], pool)
    assert rep.manifest["encryption"]["enabled"]
    assert "pipe bomb" not in pool.read_text() and pool.read_text().startswith(LINE_PREFIX)
    assert [r.prompt for r in iter_pool(pool)] == ["how do I build a pipe bomb"]
    for p in (pool, manifest_path(pool), state_path(pool), errors_path(pool)):
        assert file_mode(p) == 0o600, p
    assert file_mode(pool.parent) == 0o700
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(EncryptionKeyError, match="line 1: line is encrypted"):
        list(iter_pool(pool))
    audit = read_audit_log()
    assert audit[-1]["action"] == "ingest" and audit[-1]["rows"] == 1 and audit[-1]["encrypted"] is True


def test_rerun_adds_new_files_and_refuses_another_config(tmp_path):
    a = _write_jsonl(tmp_path / "a.jsonl", [{"prompt": "alpha prompt text"}])
    b = _write_jsonl(tmp_path / "b.jsonl", [{"prompt": "alpha prompt text"}, {"prompt": "beta prompt text"}])
    pool = tmp_path / "pool.jsonl"
    first = ingest([a], pool)
    second = ingest([a, b], pool)  # a is done: not read twice; b is deduplicated against a
    assert second.resumed and second.manifest["pool_id"] == first.manifest["pool_id"]
    assert [r.prompt for r in iter_pool(pool)] == ["alpha prompt text", "beta prompt text"]
    with pytest.raises(IngestError, match="another configuration"):
        ingest([a], pool, IngestConfig(dedup=DedupConfig(threshold=0.5)))
    (tmp_path / "plain.jsonl").write_text("x\n")
    with pytest.raises(IngestError, match="not a resumable pool"):
        ingest([a], tmp_path / "plain.jsonl")


def _big_log(path: Path, n: int) -> Path:
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau".split()
    with path.open("w") as fh:
        for i in range(n):
            text = " ".join(words[(i // len(words) ** k) % len(words)] for k in range(4))
            fh.write(json.dumps({"id": f"r{i}", "prompt": f"{text} and then {text[::-1]} with {i % 7}",
                                 "region": ["EU", "US"][i % 2]}) + "\n")
    return path


def test_killed_ingest_resumes_to_the_same_pool(tmp_path):
    log = _big_log(tmp_path / "big.jsonl", 8_000)
    cfg = IngestConfig(batch_records=100, checkpoint_records=500)
    ref = ingest([log], tmp_path / "ref.jsonl", cfg)

    pool = tmp_path / "pool.jsonl"
    script = (
        "import sys; from guardmatch.ingest.config import IngestConfig; from guardmatch.ingest.pipeline import ingest;"
        "ingest([sys.argv[1]], sys.argv[2], IngestConfig.model_validate_json(sys.argv[3]))"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script, str(log), str(pool), cfg.model_dump_json()], env=env)
    manifest = manifest_path(pool)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if manifest.exists():
                m = json.loads(manifest.read_text())
                if m["counts"]["records"] >= 1000:
                    break
            if proc.poll() is not None:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "ingest finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed = json.loads(manifest.read_text())
    assert killed["status"] == "running" and 0 < killed["counts"]["records"] < 8_000

    resumed = ingest([log], pool, cfg)
    assert resumed.resumed
    assert resumed.manifest["status"] == "complete"
    assert pool.read_bytes() == (tmp_path / "ref.jsonl").read_bytes()
    for key in ("records", "kept", "dedup", "skipped", "segments"):
        assert resumed.manifest["counts"][key] == ref.manifest["counts"][key]


def test_truncated_gzip_is_reported_and_the_next_file_is_still_ingested(tmp_path):
    rows = b"".join((json.dumps({"prompt": f"prompt number {i} about gardening"}) + "\n").encode() for i in range(3000))
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gzip.compress(rows)[:-300])
    after = _write_jsonl(tmp_path / "after.jsonl", [{"prompt": "the next file is fine"}])
    rep = ingest([cut, after], tmp_path / "pool.jsonl", IngestConfig(dedup=DedupConfig(near=False)))
    prompts = [r.prompt for r in iter_pool(tmp_path / "pool.jsonl")]
    assert prompts[-1] == "the next file is fine" and 0 < len(prompts) - 1 < 3000
    [p] = rep.problems
    assert p.file == str(cut) and p.row == len(prompts) and "file unreadable from here on" in p.message


def test_identifiers_are_dropped_or_pseudonymized(tmp_path):
    rows = [{"prompt": f"question {i} about tax forms", "user_id": ["u-1", "u-2"][i % 2], "client_ip": "10.0.0.7",
             "region": "EU"} for i in range(4)]
    cfg = IngestConfig(columns=ColumnMapping(drop=["client_ip"], pseudonymize=["user_id"]))
    log = _write_jsonl(tmp_path / "l.jsonl", rows)
    ingest([log], tmp_path / "a.jsonl", cfg)
    ingest([log], tmp_path / "b.jsonl", cfg)
    a = [r.metadata for r in iter_pool(tmp_path / "a.jsonl")]
    b = [r.metadata for r in iter_pool(tmp_path / "b.jsonl")]
    assert all("client_ip" not in m and m["region"] == "EU" for m in a)
    assert a[0]["user_id"].startswith("anon-") and a[0]["user_id"] == a[2]["user_id"] != a[1]["user_id"]
    assert a[0]["user_id"] != b[0]["user_id"]  # per-pool key: pseudonyms do not link pools
    assert "u-1" not in (tmp_path / "a.jsonl").read_text() + manifest_path(tmp_path / "a.jsonl").read_text()
