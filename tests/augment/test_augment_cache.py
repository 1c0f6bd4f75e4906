"""The view cache: records, torn lines, reader API, coverage, errors, file modes, encryption."""

from __future__ import annotations

import json
import stat

import pytest

from guardmatch.augment.cache import ACCEPTED, REJECTED, MissingViewsError, ViewCache, ViewRecord, list_caches
from guardmatch.data.example import Example, Task

DESC = {"name": "unit", "config": {"x": 1}}
FP = "ab" * 32


def _examples() -> list[Example]:
    return [Example(f"e{i}", f"prompt number {i}", None, i % 2, "unit") for i in range(4)]


def _rec(ex: Example, view: int, attempt: int, status: str, text: str | None, reason: str | None = None) -> ViewRecord:
    return ViewRecord(Task.PROMPT, ex.content_hash("prompt"), view, attempt, status, reason, text, None,
                      {"note": "x"}, "run1", ex.id)


def test_write_read_views_for_and_counts(tmp_path):
    exs = _examples()
    cache = ViewCache.create(DESC, FP, tmp_path)
    with cache.writer("run1") as w:
        w.write(_rec(exs[0], 0, 0, ACCEPTED, "view a0"))
        w.write(_rec(exs[0], 1, 0, REJECTED, "bad", "echo"))
        w.write(_rec(exs[0], 1, 1, ACCEPTED, "view a1"))
        w.write(_rec(exs[1], 0, 0, REJECTED, "", "empty"))
        w.write(_rec(exs[2], 0, 0, ACCEPTED, "view c0"))
    cache.write_manifest()
    back = ViewCache.open(cache.path)
    views = back.views_for(exs[:3], "prompt", min_coverage=0.5, on_missing="empty")
    assert [v.prompt for v in views[0]] == ["view a0", "view a1"]
    assert views[1] == []
    assert views[0][0].id == "e0" and views[0][0].label == exs[0].label and views[0][0].source == "unit"
    assert views[0][1].metadata["view_index"] == 1 and views[0][1].metadata["augmenter"] == "unit"
    assert back.coverage(exs, "prompt") == pytest.approx(0.5)
    stats = back.stats()["prompt"]
    assert stats == {"texts": 3, "accepted_views": 3, "attempts": 5, "rejected": {"echo": 1, "empty": 1},
                     "rejection_rate": 0.4}
    manifest = json.loads((cache.path / "manifest.json").read_text())
    assert manifest["counts"]["prompt"]["rejected"] == {"echo": 1, "empty": 1}
    # identity fallback marks the missing view
    ident = back.views_for(exs[:3], "prompt", min_coverage=0.5)
    assert ident[1][0].prompt == exs[1].prompt and ident[1][0].metadata["missing_view"] is True


def test_missing_views_error_names_count_and_command(tmp_path):
    exs = _examples()
    cache = ViewCache.create(DESC, FP, tmp_path, command="guardmatch augment --augmenter unit --input x.jsonl")
    with cache.writer() as w:
        w.write(_rec(exs[0], 0, 0, ACCEPTED, "only one"))
        w.write(_rec(exs[1], 0, 0, REJECTED, "no", "echo"))
        w.write(_rec(exs[1], 0, 1, REJECTED, "no", "intent"))
    with pytest.raises(MissingViewsError) as err:
        ViewCache.open(cache.path).views_for(exs, "prompt")
    assert err.value.missing == 3 and err.value.total == 4
    assert err.value.ungenerated == 2 and err.value.rejected == 1
    msg = str(err.value)
    assert "3 of 4 examples" in msg and "guardmatch augment --augmenter unit --input x.jsonl\n" in msg
    assert "--max-attempts 4" in msg


def test_torn_last_line_is_ignored_and_repaired(tmp_path):
    exs = _examples()
    cache = ViewCache.create(DESC, FP, tmp_path)
    with cache.writer("run1") as w:
        w.write(_rec(exs[0], 0, 0, ACCEPTED, "kept"))
    shard = cache.path / "shards" / "run1.jsonl"
    good = shard.read_bytes()
    with open(shard, "ab") as fh:  # what a SIGKILL in the middle of a write leaves
        fh.write(b'{"task": "prompt", "key": "' + exs[1].content_hash("prompt").encode() + b'", "view": 0, "att')
    reader = ViewCache.open(cache.path)
    assert reader.bad_lines == 1
    assert reader.coverage(exs[:2], "prompt") == 0.5
    with reader.writer("run2") as w:  # opening a writer truncates the torn tail
        w.write(_rec(exs[1], 0, 0, ACCEPTED, "new"))
    assert shard.read_bytes() == good
    final = ViewCache.open(cache.path)
    assert final.bad_lines == 0 and final.coverage(exs[:2], "prompt") == 1.0


def test_files_are_owner_only_and_lock_is_exclusive(tmp_path):
    from guardmatch.augment.cache import CacheLockedError

    cache = ViewCache.create(DESC, FP, tmp_path / "root")
    with cache.writer("r") as w:
        w.write(_rec(_examples()[0], 0, 0, ACCEPTED, "x"))
        with pytest.raises(CacheLockedError):
            ViewCache.open(cache.path).writer("other")
    for path in (cache.path, cache.path / "shards", tmp_path / "root" / "views"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for path in (cache.path / "manifest.json", cache.path / "shards" / "r.jsonl"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_open_by_name_and_ambiguity(tmp_path):
    c1 = ViewCache.create(DESC, "11" * 32, tmp_path)
    assert ViewCache.open("unit", cache_root=tmp_path).path == c1.path
    assert ViewCache.open(c1.path.name, cache_root=tmp_path).path == c1.path
    ViewCache.create(DESC, "22" * 32, tmp_path)
    with pytest.raises(ValueError, match="2 caches of augmenter 'unit'"):
        ViewCache.open("unit", cache_root=tmp_path)
    assert ViewCache.open("unit", cache_root=tmp_path, fingerprint="22" * 32).path.name.endswith("222222222222")
    with pytest.raises(FileNotFoundError, match="no view cache 'nope'"):
        ViewCache.open("nope", cache_root=tmp_path)
    assert {c["fingerprint"] for c in list_caches(tmp_path)} == {"11" * 6, "22" * 6}


def test_encrypted_at_rest_when_key_is_set(tmp_path, monkeypatch):
    pytest.importorskip("cryptography")
    from guardmatch.storage.crypto import generate_key

    monkeypatch.setenv("GUARDMATCH_ENCRYPTION_KEY", generate_key())
    exs = _examples()
    cache = ViewCache.create(DESC, FP, tmp_path)
    with cache.writer("enc") as w:
        w.write(_rec(exs[0], 0, 0, ACCEPTED, "secret harmful view"))
    raw = (cache.path / "shards" / "enc.jsonl").read_text()
    assert "secret harmful view" not in raw and raw.startswith("gmenc1:")
    assert ViewCache.open(cache.path).views_for(exs[:1], "prompt")[0][0].prompt == "secret harmful view"


def test_pack_is_reproducible_dedups_and_ships(tmp_path, monkeypatch):
    """A packed cache reads back alone (a fresh clone), is byte-for-byte reproducible, reads each
    attempt once when shards still hold it, and is found (and continued) as a shipped cache."""
    import gzip
    import shutil

    exs = _examples()
    cache = ViewCache.create(DESC, FP, tmp_path / "root")
    with cache.writer("run1") as w:
        w.write(_rec(exs[1], 0, 0, REJECTED, "bad", "echo"))
        w.write(_rec(exs[1], 0, 1, ACCEPTED, "view b"))
        w.write(_rec(exs[0], 0, 0, ACCEPTED, "view a"))
    out = cache.pack(prune=False)
    packed = cache.path / "records.jsonl.gz"
    first = packed.read_bytes()
    assert out["records"] == 3 and out["shards_pruned"] == 0
    lines = [json.loads(x) for x in gzip.decompress(first).decode().splitlines()]
    assert [(r["key"], r["view"], r["attempt"]) for r in lines] == sorted((r["key"], r["view"], r["attempt"])
                                                                        for r in lines)
    both = ViewCache.open(cache.path)  # packed file and shard hold the same 3 attempts
    assert both.stats()["prompt"]["attempts"] == 3
    assert ViewCache.open(cache.path).pack(prune=True)["shards_pruned"] == 1
    assert packed.read_bytes() == first and not list((cache.path / "shards").glob("*.jsonl"))

    shipped = tmp_path / "repo-views"
    shutil.copytree(cache.path, shipped / cache.path.name)
    monkeypatch.setenv("GUARDMATCH_VIEWS_DIR", str(shipped))
    fresh_root = tmp_path / "fresh"  # a fresh clone: nothing under the cache root
    got = ViewCache.open("unit", cache_root=fresh_root)
    assert got.path == shipped / cache.path.name
    assert [v.prompt for v in got.views_for(exs[:2], "prompt")[1]] == ["view b"]
    assert any(c["shipped"] for c in list_caches(fresh_root))
    again = ViewCache.create(DESC, FP, fresh_root)  # generation continues the shipped cache in place
    assert again.path == shipped / cache.path.name and again.slot_state(Task.PROMPT, exs[0].content_hash("prompt"), 0)[0]


def test_remove_keys_drops_records_from_shards_and_packed_file(tmp_path):
    from guardmatch.augment.cache import CacheLockedError

    exs = _examples()
    cache = ViewCache.create(DESC, FP, tmp_path)
    with cache.writer("run1") as w:  # packed below
        w.write(_rec(exs[0], 0, 0, ACCEPTED, "a"))
        w.write(_rec(exs[1], 0, 0, ACCEPTED, "b"))
    cache.pack()
    with cache.writer("run2") as w:  # stays in a shard
        w.write(_rec(exs[0], 1, 0, ACCEPTED, "a1"))
        w.write(_rec(exs[2], 0, 0, ACCEPTED, "c"))
    gone = [(Task.PROMPT, exs[0].content_hash("prompt")), ("prompt", exs[3].content_hash("prompt"))]
    assert cache.remove_keys(gone, dry_run=True) == 2
    assert len(list(ViewCache.open(cache.path).iter_records())) == 4  # a dry run writes nothing
    with cache.writer("run3"):  # a running writer: refused, nothing removed
        with pytest.raises(CacheLockedError):
            ViewCache.open(cache.path).remove_keys(gone)
    assert cache.remove_keys(gone) == 2
    assert sorted(r.prompt for r in cache.iter_records()) == ["b", "c"]
    assert sorted(r.prompt for r in ViewCache.open(cache.path).iter_records()) == ["b", "c"]
    manifest = json.loads((cache.path / "manifest.json").read_text())
    assert manifest["counts"]["prompt"]["texts"] == 2 and manifest["packed"]["records"] == 1
    assert stat.S_IMODE((cache.path / "shards" / "run2.jsonl").stat().st_mode) == 0o600
    assert cache.remove_keys(gone) == 0
