"""Finished cells travel as committed archives: a fresh output_dir resumes the grid without rerunning them."""

from __future__ import annotations

import json
import shutil
import tarfile

import pandas as pd
import pytest
from grid_helpers import tiny_grid_dict

from guardmatch.grid import GridRunner, build_report, load_grid_config
from guardmatch.grid.archive import ArchiveError, archive_path, archived_record, export_cell, restore_cell
from guardmatch.grid.store import read_cell_file


@pytest.fixture()
def make_grid(tmp_path, shared_data, train_file, tiny_model_dir, view_cache, feature_dir):
    def make(out="grid", **extra):
        return load_grid_config(data=tiny_grid_dict(tmp_path / out, train_file=train_file, model_dir=tiny_model_dir,
                                                     views=view_cache, features=feature_dir, data_dir=shared_data,
                                                     archive_dir=str(tmp_path / "cells"), **extra))
    return make


def test_a_fresh_output_dir_restores_archived_cells_instead_of_rerunning(make_grid, tmp_path):
    grid = make_grid(seeds=[0])
    first = GridRunner(grid, progress=False).run()
    assert len(first.ran) == 3
    archives = sorted(p.relative_to(tmp_path / "cells").as_posix() for p in (tmp_path / "cells").rglob("*.tar.gz"))
    assert archives == ["tiny/prompt/in_source/fixmatch-drop/20/seed0.tar.gz",
                        "tiny/prompt/in_source/supervised/20/seed0.tar.gz",
                        "tiny/prompt/in_source/tfidf/20/seed0.tar.gz"]
    with tarfile.open(tmp_path / "cells" / archives[1]) as tar:
        names = tar.getnames()
    assert names[-1] == "cell.json" and "metrics.jsonl" in names and "eval/scores/xstest.scores.npy" in names
    assert not any(n.startswith(("model", "checkpoints")) or n == "split_manifest.json" for n in names)
    before = build_report(grid, tmp_path / "r1", plots=False)

    shutil.rmtree(grid.output_dir)  # a fresh clone: the archives only
    again = GridRunner(grid, progress=False).run()
    assert again.ran == [] and len(again.skipped_done) == 3
    restored = read_cell_file(tmp_path / "grid" / "prompt/in_source/supervised/20/seed0")
    assert restored["path"] == str(tmp_path / "grid" / "prompt/in_source/supervised/20/seed0")
    after = build_report(grid, tmp_path / "r2", plots=False)
    assert after["cells_done"] == before["cells_done"] == 3
    cols = ["arm", "seed", "test_set", "f1", "auprc", "elapsed_s"]
    a = pd.read_csv(tmp_path / "r1" / "cells.csv")[cols].sort_values(cols[:3]).reset_index(drop=True)
    b = pd.read_csv(tmp_path / "r2" / "cells.csv")[cols].sort_values(cols[:3]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert (tmp_path / "r1" / "report.md").read_text() == (tmp_path / "r2" / "report.md").read_text()


def test_an_archive_of_another_config_is_not_restored(make_grid, tmp_path):
    grid = make_grid(seeds=[0], methods={"supervised": {"algorithm": "supervised"}}, baselines={})
    assert len(GridRunner(grid, progress=False).run().ran) == 1
    shutil.rmtree(grid.output_dir)
    changed = make_grid(seeds=[0], methods={"supervised": {"algorithm": "supervised"}}, baselines={},
                        base={**grid.base, "optim": {**grid.base["optim"], "max_steps": 4}})
    plans = GridRunner(changed, progress=False).plan()
    assert [p.state for p in plans] == ["pending"]
    assert not (tmp_path / "grid" / "prompt").exists()  # nothing unpacked
    rerun = GridRunner(changed, progress=False).run()
    assert rerun.ran == ["prompt/in_source/supervised/20/seed0"]
    record = archived_record(archive_path(tmp_path / "cells", "tiny", "prompt/in_source/supervised/20/seed0"))
    assert record["config_hash"] == plans[0].config_hash  # the new result replaced the old archive


def test_export_is_byte_stable_and_restore_checks_the_hash(tmp_path):
    cell = tmp_path / "cell"
    (cell / "eval" / "scores").mkdir(parents=True)
    (cell / "eval" / "evaluation.json").write_text('{"results": {}}')
    (cell / "eval" / "scores" / "x.scores.npy").write_bytes(b"\x93NUMPY")
    (cell / "run.json").write_text("{}")
    (cell / "split_manifest.json").write_text("{}")
    (cell / "cell.json").write_text(json.dumps({"status": "done", "config_hash": "abc", "finished": 1.0,
                                                "path": "elsewhere"}))
    out = tmp_path / "a" / "cell.tar.gz"
    assert export_cell(cell, out) is True
    first = out.read_bytes()
    assert export_cell(cell, out) is False  # already archived
    out.unlink()
    assert export_cell(cell, out) is True and out.read_bytes() == first  # same cell, same bytes

    dest = tmp_path / "restored"
    assert restore_cell(out, dest, "other") is False and not dest.exists()
    assert restore_cell(out, dest, "abc") is True
    assert (dest / "eval" / "scores" / "x.scores.npy").read_bytes() == b"\x93NUMPY"
    assert not (dest / "split_manifest.json").exists()
    assert json.loads((dest / "cell.json").read_text())["path"] == str(dest)
    assert restore_cell(tmp_path / "missing.tar.gz", dest, "abc") is False

    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "cell.json").write_text('{"status": "running"}')
    assert export_cell(unfinished, tmp_path / "u.tar.gz") is False and not (tmp_path / "u.tar.gz").exists()


def test_a_torn_archive_names_its_file(tmp_path):
    bad = tmp_path / "seed0.tar.gz"
    bad.write_bytes(b"not a tarball")
    with pytest.raises(ArchiveError, match="seed0.tar.gz.*delete it to rerun"):
        archived_record(bad)
