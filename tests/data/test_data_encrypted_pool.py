"""Pools written encrypted at rest are read transparently with the key, and reported without it."""

from __future__ import annotations

from guardmatch.data.loaders import load_file
from guardmatch.data.records import open_jsonl_writer
from guardmatch.storage.crypto import AtRestCipher, generate_key


def test_encrypted_pool_round_trip(tmp_path, monkeypatch):
    key = generate_key()
    monkeypatch.setenv("GUARDMATCH_ENCRYPTION_KEY", key)
    pool = tmp_path / "pool.jsonl"
    with open_jsonl_writer(pool, cipher=AtRestCipher.from_env()) as writer:
        writer.write({"id": "a", "prompt": "how do I pick a lock", "response": None, "label": None})
        writer.write({"id": "b", "prompt": "write a poem", "response": None, "label": None})
    assert "pick a lock" not in pool.read_text()
    result = load_file(pool, require_label=False)
    assert [ex.prompt for ex in result.examples] == ["how do I pick a lock", "write a poem"]

    monkeypatch.delenv("GUARDMATCH_ENCRYPTION_KEY")
    missing = load_file(pool, require_label=False, errors="skip")
    assert missing.examples == []
    assert [p.row for p in missing.report.problems] == [1, 2]
    assert "GUARDMATCH_ENCRYPTION_KEY" in missing.report.problems[0].message
