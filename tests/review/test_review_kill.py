"""A process killed mid-import (SIGKILL, real subprocess) loses no stored review and leaves no half import."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from guardmatch.data.example import Example
from guardmatch.review.store import ReviewStore

N = 4000


@pytest.mark.slow
def test_sigkill_mid_import_then_rerun(tmp_path):
    db = tmp_path / "q.db"
    with ReviewStore.open(db, task="prompt") as s:
        s.add_items([Example(f"i{k}", f"prompt number {k}") for k in range(N)])
        s.add_review("i1", "harmful", "alice")  # committed before the crash: must survive it
        s.add_review("i2", "unharmful", "alice")
        before = s.reviews()
    big = tmp_path / "big.jsonl"
    big.write_text("".join(json.dumps({"id": f"i{k}", "label": "harmful" if k % 3 else "unharmful",
                                       "reviewer": "bob"}) + "\n" for k in range(N)))
    cmd = [sys.executable, "-m", "guardmatch", "review", "import", str(db), str(big), "--progress-every", "100"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen = ""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen += line
            if line.startswith("importing: 100/"):
                proc.send_signal(signal.SIGKILL)  # mid-transaction: 100 rows written, uncommitted
                break
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the import finished before it could be killed: {seen[-500:]}"

    with ReviewStore.open(db, create=False) as s:
        assert s.integrity_check() == "ok"
        assert s.reviews() == before  # nothing lost, nothing half-written
        assert s.conn.execute("SELECT COUNT(*) FROM imports").fetchone()[0] == 0
        assert s.labels() == {"i1": (1, "human"), "i2": (0, "human")}

    # the same command again imports the whole file; a third run changes nothing
    done = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["stored"] == N and not report["already_imported"]
    # bob agrees with alice on i1 (harmful) and disagrees on i2: reported, not overwritten
    assert [c["item_id"] for c in report["conflicts"]] == ["i2"]
    again = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=300, env=env)
    assert json.loads(again.stdout)["already_imported"]
    with ReviewStore.open(db, create=False) as s:
        assert len(s.reviews()) == N + 2
        assert [c["item_id"] for c in s.conflicts()] == ["i2"]
        assert s.labels()["i1"] == (1, "human") and "i2" not in s.labels()
