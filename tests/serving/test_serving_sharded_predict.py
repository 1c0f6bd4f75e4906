"""`guardmatch predict` data-parallel under torchrun: 2 CPU processes, one merged output in input
order, the same scores as one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_two_process_predict_merges_in_input_order(tmp_path, shared_data, tiny_prompt_model_dir):
    model_dir = tiny_prompt_model_dir
    rows = [json.loads(line) for line in (shared_data / "aegis1" / "aegis1_test_prompt.jsonl").open()][:37]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": r["id"], "prompt": r["prompt"]}) + "\n" for r in rows))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    one = tmp_path / "one.jsonl"
    subprocess.run([sys.executable, "-m", "guardmatch.cli.main", "predict", str(model_dir), str(src), "--out", str(one)],
                   check=True, env=env, capture_output=True, timeout=300)
    two = tmp_path / "two.jsonl"
    torchrun = Path(sys.executable).with_name("torchrun")
    res = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29517", "-m", "guardmatch.cli.main",
                          "predict", str(model_dir), str(src), "--out", str(two)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    said = res.stderr.replace("\n", "")
    assert '"processes": 2' in said and '"scored_now": 19' in said and '"scored_now": 18' in said  # 37 rows split
    a = [json.loads(x) for x in one.read_text().splitlines()]
    b = [json.loads(x) for x in two.read_text().splitlines()]
    assert [r["id"] for r in b] == [r["id"] for r in a] == [r["id"] for r in rows]
    assert max(abs(x["p_harmful"] - y["p_harmful"]) for x, y in zip(a, b)) < 1e-5
    assert not list(tmp_path.glob("two.jsonl.part*"))  # parts merged and removed
