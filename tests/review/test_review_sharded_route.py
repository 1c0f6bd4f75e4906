"""`guardmatch review route` with the pool scored by 2 processes under torchrun: the same queue and
scores as one process; only rank 0 writes the store."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path


def test_two_process_pool_scoring_routes_like_one(tmp_path, shared_data, tiny_prompt_model_dir):
    model_dir = tiny_prompt_model_dir
    rows = [json.loads(line) for line in (shared_data / "aegis1" / "aegis1_test_prompt.jsonl").open()][:41]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"id": r["id"], "prompt": r["prompt"]}) + "\n" for r in rows))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    args = ["review", "route", "--model", str(model_dir), "--pool", str(pool), "--budget", "7", "--json"]
    one = subprocess.run([sys.executable, "-m", "guardmatch.cli.main", args[0], args[1], str(tmp_path / "one.db"),
                          *args[2:]], env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    torchrun = Path(sys.executable).with_name("torchrun")
    two = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29519", "-m", "guardmatch.cli.main",
                          args[0], args[1], str(tmp_path / "two.db"), *args[2:]],
                         env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = json.loads(one.stdout), json.loads(two.stdout)
    assert a["scored"] == b["scored"] == 41 and a["review"] == b["review"] == 7
    assert a["store"]["queue"] == b["store"]["queue"]
    with sqlite3.connect(tmp_path / "one.db") as c1, sqlite3.connect(tmp_path / "two.db") as c2:
        q = "select name from sqlite_master where type='table' order by name"
        assert [r[0] for r in c1.execute(q)] == [r[0] for r in c2.execute(q)]
