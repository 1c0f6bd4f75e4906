"""The ingest / purge / audit / keygen commands, end to end."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from guardmatch.cli.main import app
from guardmatch.storage.audit import AUDIT_USER_ENV, audit_log, read_audit_log
from guardmatch.storage.crypto import KEY_ENV, AtRestCipher
from guardmatch.storage.files import CACHE_ENV
from guardmatch.storage.lineage import register_derived


def test_cli_ingest_audit_purge_keygen(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(AUDIT_USER_ENV, "tester")
    monkeypatch.delenv(KEY_ENV, raising=False)
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
    assert manifest["counts"]["skipped"] == {"bad JSON": 1}

    derived = tmp_path / "pool.embeddings"
    derived.mkdir()
    (derived / "x.safetensors").write_bytes(b"0")
    register_derived(pool, derived, "embeddings")
    audit_log("export", tmp_path / "export.csv", 2)

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
    assert [r["action"] for r in read_audit_log()] == ["ingest", "export", "purge"]

    res = runner.invoke(app, ["keygen"])
    assert res.exit_code == 0 and AtRestCipher(res.stdout.strip()).key_id
    res = runner.invoke(app, ["ingest", str(tmp_path / "missing.jsonl"), "--out", str(pool), "-q"])
    assert res.exit_code == 2 and "no such file" in " ".join(res.output.split())
