"""At-rest protection: owner-only files, encryption, audit log, derived registry and purge."""

from __future__ import annotations

import json
import os

import pytest

from guardmatch.data.records import iter_jsonl, open_jsonl_writer
from guardmatch.storage.audit import AUDIT_USER_ENV, audit_log, read_audit_log
from guardmatch.storage.crypto import (
    BLOB_MAGIC,
    KEY_ENV,
    LINE_PREFIX,
    AtRestCipher,
    EncryptionKeyError,
    generate_key,
    is_encrypted_line,
)
from guardmatch.storage.files import (
    CACHE_ENV,
    cache_root,
    file_mode,
    read_secure_bytes,
    secure_mkdir,
    secure_open,
    write_secure_bytes,
    write_secure_text,
)
from guardmatch.storage.lineage import derived_from, manifest_path, pool_fingerprint, purge, register_derived


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setenv(AUDIT_USER_ENV, "alice")


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_files_and_dirs_are_owner_only_whatever_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        f = tmp_path / "a" / "b" / "pool.jsonl"
        with secure_open(f, "w") as fh:
            fh.write("x\n")
        assert file_mode(f) == 0o600
        assert file_mode(tmp_path / "a") == 0o700
        assert file_mode(tmp_path / "a" / "b") == 0o700
        blob = write_secure_bytes(tmp_path / "c" / "emb.bin", b"\x00\x01")
        assert file_mode(blob) == 0o600 and blob.read_bytes() == b"\x00\x01"
        # an existing world-readable file is tightened when written through secure_open
        loose = tmp_path / "loose.txt"
        loose.write_text("old")
        os.chmod(loose, 0o644)
        with secure_open(loose, "a") as fh:
            fh.write("new")
        assert file_mode(loose) == 0o600 and loose.read_text() == "oldnew"
    finally:
        os.umask(old)
    assert not list(tmp_path.rglob("*.tmp"))


def test_existing_directories_keep_their_mode(tmp_path):
    os.chmod(tmp_path, 0o755)
    secure_mkdir(tmp_path / "new")
    assert file_mode(tmp_path) == 0o755
    assert file_mode(tmp_path / "new") == 0o700


def test_cipher_lines_roundtrip_and_are_opaque(monkeypatch, tmp_path):
    key = generate_key()
    monkeypatch.setenv(KEY_ENV, key)
    cipher = AtRestCipher.from_env()
    assert cipher is not None
    line = json.dumps({"prompt": "how do I make a pipe bomb", "label": None})
    enc = cipher.encrypt_line(line)
    assert enc.startswith(LINE_PREFIX) and "\n" not in enc and "pipe" not in enc
    assert is_encrypted_line(enc) and not is_encrypted_line(line)
    assert cipher.decrypt_line(enc) == line
    # the JSONL pair: writer encrypts, reader decrypts with the env key transparently
    path = tmp_path / "preds.jsonl"
    with open_jsonl_writer(path, cipher=cipher) as w:
        w.write({"id": "1", "prompt": "secret harmful text"})
        w.write({"id": "2", "prompt": "more"})
    raw = path.read_text()
    assert "secret" not in raw and raw.count("\n") == 2
    assert [r["id"] for r in iter_jsonl(path)] == ["1", "2"]
    assert file_mode(path) == 0o600


def test_missing_or_wrong_key_is_a_clear_error(monkeypatch, tmp_path):
    cipher = AtRestCipher(generate_key())
    path = tmp_path / "pool.jsonl"
    with open_jsonl_writer(path, cipher=cipher) as w:
        w.write({"id": "1"})
    with pytest.raises(EncryptionKeyError, match=r"pool.jsonl, line 1: line is encrypted; set GUARDMATCH_ENCRYPTION_KEY"):
        list(iter_jsonl(path))
    monkeypatch.setenv(KEY_ENV, generate_key())
    with pytest.raises(EncryptionKeyError, match="wrong GUARDMATCH_ENCRYPTION_KEY"):
        list(iter_jsonl(path))
    monkeypatch.setenv(KEY_ENV, "not-a-key")
    with pytest.raises(EncryptionKeyError, match="not a valid key"):
        AtRestCipher.from_env()


def test_key_rotation_and_blobs(monkeypatch, tmp_path):
    old, new = generate_key(), generate_key()
    token = AtRestCipher(old).encrypt_line("hello")
    rotated = AtRestCipher(f"{new},{old}")
    assert rotated.decrypt_line(token) == "hello"
    assert AtRestCipher(new).decrypt_line(rotated.encrypt_line("x")) == "x"
    path = write_secure_bytes(tmp_path / "review.json", b'{"a": 1}', cipher=rotated)
    assert path.read_bytes().startswith(BLOB_MAGIC)
    with pytest.raises(EncryptionKeyError, match="file is encrypted"):
        read_secure_bytes(path)
    monkeypatch.setenv(KEY_ENV, new)
    assert read_secure_bytes(path) == b'{"a": 1}'
    assert AtRestCipher.from_env().key_id == AtRestCipher(new).key_id != AtRestCipher(old).key_id


def test_audit_log_records_who_when_what_rows(tmp_path):
    rec = audit_log("export", tmp_path / "out.jsonl", 42, format="jsonl")
    audit_log("export", "other", 7)
    log = read_audit_log()
    assert [r["rows"] for r in log] == [42, 7]
    assert log[0]["who"] == "alice" and log[0]["action"] == "export" and log[0]["format"] == "jsonl"
    assert log[0]["what"].endswith("out.jsonl") and log[0]["when"].endswith("+00:00")
    assert rec == log[0]
    assert file_mode(cache_root() / "audit.jsonl") == 0o600
    assert file_mode(cache_root()) == 0o700


def test_purge_removes_pool_sidecars_and_transitive_derivatives(tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"id": "1"}\n')
    write_secure_text(manifest_path(pool), json.dumps({"pool_id": "abc123"}))
    emb_dir = tmp_path / "emb"
    emb_dir.mkdir()
    (emb_dir / "part0.safetensors").write_bytes(b"0" * 100)
    preds = tmp_path / "preds.jsonl"
    preds.write_text("p\n")
    review = tmp_path / "review.sqlite"
    review.write_text("r")
    unrelated = tmp_path / "other.jsonl"
    unrelated.write_text("keep")
    register_derived(pool, emb_dir, "embeddings")
    register_derived(emb_dir, preds, "predictions")  # derived from a derivative
    register_derived(preds, review, "review-db")
    register_derived(unrelated, tmp_path / "other-preds.jsonl", "predictions")
    # the manifest id survives a move: registration by the moved path still matches
    assert pool_fingerprint(pool) == "pool:abc123"
    assert {d["kind"] for d in derived_from(pool)} == {"embeddings", "predictions", "review-db"}

    dry = purge(pool, dry_run=True)
    assert dry.dry_run and pool.exists() and len(dry.removed) == 5
    report = purge(pool)
    for p in (pool, manifest_path(pool), emb_dir, preds, review):
        assert not p.exists()
        assert str(p) in report.removed
    assert unrelated.exists()
    assert report.bytes_freed >= 100
    assert derived_from(pool) == []
    assert len(derived_from(unrelated)) == 1
    assert read_audit_log()[-1]["action"] == "purge"


def _pool_file(path, prompts):
    from guardmatch.data.example import Example
    from guardmatch.data.loaders import save_jsonl

    return save_jsonl([Example(f"{path.stem}-{i}", p, None, None, path.stem) for i, p in enumerate(prompts)], path)


def test_purge_keeps_a_shared_view_cache_and_removes_only_the_pools_records(tmp_path):
    """Two pools share one view cache: purging one removes its texts' records, never the cache."""
    import gzip

    from guardmatch.augment.cache import ACCEPTED, ViewCache, ViewRecord
    from guardmatch.data.example import Example, Task

    a = _pool_file(tmp_path / "a.jsonl", ["only in a", "in both pools", "also only in a"])
    b = _pool_file(tmp_path / "b.jsonl", ["only in b", "in both pools"])
    texts = ["only in a", "in both pools", "also only in a", "only in b"]
    cache = ViewCache.create({"name": "unit", "config": {}}, "cd" * 32, tmp_path / "cache")

    def rec(text, run):
        key = Example("x", text).content_hash(Task.PROMPT)
        return ViewRecord(Task.PROMPT, key, 0, 0, ACCEPTED, None, f"view of {text}", None, {}, run, "x")

    with cache.writer("run1") as w:  # packed later
        for t in texts[:2]:
            w.write(rec(t, "run1"))
    cache.pack()
    with cache.writer("run2") as w:  # left in a shard
        for t in texts[2:]:
            w.write(rec(t, "run2"))
    cache.register_source(a)
    cache.register_source(b)
    only_a = tmp_path / "a-preds.jsonl"
    only_a.write_text("p\n")
    register_derived(a, only_a, "predictions")
    shared_file = tmp_path / "both.bin"
    shared_file.write_text("x")
    register_derived(a, shared_file, "embeddings")
    register_derived(b, shared_file, "embeddings")

    dry = purge(a, dry_run=True)
    assert dry.filtered == {str(cache.path): 2} and cache.path.exists()
    assert len(list(ViewCache.open(cache.path).iter_records())) == 4  # a dry run changes nothing
    report = purge(a)
    assert not a.exists() and not only_a.exists() and str(only_a) in report.removed
    assert cache.path.is_dir() and str(cache.path) not in report.removed
    assert report.filtered == {str(cache.path): 2}
    assert shared_file.exists() and str(shared_file) in report.kept_shared
    left = {r.prompt for r in ViewCache.open(cache.path).iter_records()}
    assert left == {"view of in both pools", "view of only in b"}
    with gzip.open(cache.path / "records.jsonl.gz", "rt") as fh:
        assert [json.loads(x)["prompt"] for x in fh] == ["view of in both pools"]
    manifest = json.loads((cache.path / "manifest.json").read_text())
    assert manifest["counts"]["prompt"]["texts"] == 2 and manifest["packed"]["records"] == 1
    # the other pool's registry entries are intact: purging it later finds the cache again
    assert {d["path"] for d in derived_from(b)} == {str(cache.path), str(shared_file)}
    assert read_audit_log()[-1]["filtered"] == {str(cache.path): 2}
    again = purge(b)
    assert not cache.path.exists() and not shared_file.exists() and str(cache.path) in again.removed
