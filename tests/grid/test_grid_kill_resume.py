"""A grid killed mid-cell (SIGKILL, real subprocess) resumes: finished cells are skipped, the
interrupted cell continues from its checkpoint and ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from grid_helpers import tiny_grid_dict

from guardmatch.grid import GridLockedError, GridRunner, load_grid_config
from guardmatch.grid.store import read_cell_file


def _grid_dict(out: Path, **fixtures) -> dict:
    grid = tiny_grid_dict(out, **fixtures)
    grid["base"].update({"mode": "top_layers", "top_layers": 1, "threads": 1, "save_every": 10, "log_every": 10})
    grid["base"]["optim"] = {"max_steps": 400, "batch_size": 4, "lr": 1e-3, "eval_batch_size": 256}
    grid["methods"] = {"supervised": {"algorithm": "supervised"}}
    grid["augmenters"] = {}
    grid["baselines"] = {}
    return grid


@pytest.mark.slow
def test_killed_grid_resumes_and_matches_an_uninterrupted_run(tmp_path, shared_data, train_file, tiny_model_dir,
                                                               view_cache, feature_dir):
    fixtures = dict(train_file=train_file, model_dir=tiny_model_dir, views=view_cache, features=feature_dir,
                    data_dir=shared_data)
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(yaml.safe_dump(_grid_dict(tmp_path / "grid", **fixtures)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "guardmatch", "grid", "--config", str(cfg), "--quiet", "--no-plots"]
    first_cell = tmp_path / "grid" / "prompt" / "in_source" / "supervised" / "20" / "seed0"
    second_cell = tmp_path / "grid" / "prompt" / "in_source" / "supervised" / "20" / "seed1"
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    checked_lock = False
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if not checked_lock and (tmp_path / "grid" / "results.sqlite").exists():
                with pytest.raises(GridLockedError):  # one runner per grid directory
                    GridRunner(load_grid_config(cfg), progress=False).run()
                checked_lock = True
            ckpts = second_cell / "checkpoints"
            if ckpts.is_dir() and any(p.name.startswith("step-") for p in ckpts.iterdir()):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-3000:]
    done_before = read_cell_file(first_cell)
    assert done_before["status"] == "done" and read_cell_file(second_cell) is None

    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "2 cells, 1 done, 1 to run" in second.stderr.replace("\n", " ")
    assert read_cell_file(first_cell)["finished"] == done_before["finished"]  # not rerun
    resumed = read_cell_file(second_cell)
    assert resumed["status"] == "done" and resumed["info"]["resumed_from"] >= 10

    # the same cell, never interrupted
    ref = load_grid_config(data=_grid_dict(tmp_path / "ref", **fixtures))
    GridRunner(ref, progress=False, only={"seed": {"1"}}).run()
    ref_cell = tmp_path / "ref" / "prompt" / "in_source" / "supervised" / "20" / "seed1"
    for name in ("wildguardtest", "oaimod"):
        a = np.load(second_cell / "eval" / "scores" / f"{name}.scores.npy")
        b = np.load(ref_cell / "eval" / "scores" / f"{name}.scores.npy")
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert read_cell_file(ref_cell)["metrics"] == resumed["metrics"]
    report = json.loads((tmp_path / "grid" / "report" / "results.json").read_text())
    assert report["cells_done"] == 2
