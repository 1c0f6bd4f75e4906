"""The grid runner end to end on a tiny model and real data: cells, store, skip, stale, views, report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from grid_helpers import tiny_grid_dict, write_views

from guardmatch.grid import GridRunner, StaleCellsError, build_report, load_grid_config
from guardmatch.grid.store import ResultsStore


@pytest.fixture()
def make_grid(tmp_path, shared_data, train_file, tiny_model_dir, view_cache, feature_dir):
    def make(out="grid", **extra):
        return load_grid_config(data=tiny_grid_dict(tmp_path / out, train_file=train_file, model_dir=tiny_model_dir,
                                                     views=view_cache, features=feature_dir, data_dir=shared_data,
                                                     **extra))
    return make


def test_grid_runs_every_cell_records_skips_and_reports(make_grid, tmp_path):
    reference = [{"task": "prompt", "arm": "supervised", "budget": 20, "test_set": "wildguardtest", "f1": 0.748},
                 {"task": "prompt", "arm": "fixmatch-drop", "budget": 20, "test_set": "oaimod", "f1": 0.5,
                  "setting": "OpusMT"},
                 {"task": "prompt", "arm": "supervised", "budget": 2000, "test_set": "wildguardtest", "f1": 0.828}]
    grid = make_grid(report={"reference_name": "paper", "reference": reference})
    summary = GridRunner(grid, progress=False).run()
    keys = {f"prompt/in_source/{arm}/20/seed{s}" for arm in ("supervised", "fixmatch-drop", "tfidf") for s in (0, 1)}
    assert set(summary.ran) == keys and not summary.failed and not summary.skipped_views

    with ResultsStore(tmp_path / "grid" / "results.sqlite") as store:
        rows = {r["key"]: r for r in store.rows()}
    assert set(rows) == keys and {r["status"] for r in rows.values()} == {"done"}
    fm = rows["prompt/in_source/fixmatch-drop/20/seed0"]
    assert set(fm["metrics"]) == {"wildguardtest", "oaimod", "xstest", "aegis"}
    assert fm["info"]["view_coverage"] == 1.0 and fm["info"]["labeled"] == 20 and fm["info"]["unlabeled"] > 0
    cell_dir = tmp_path / "grid" / "prompt" / "in_source" / "fixmatch-drop" / "20" / "seed0"
    for name in ("cell.json", "config.yaml", "split_manifest.json", "run.json", "eval/evaluation.json",
                 "eval/scores/wildguardtest.scores.npy"):
        assert (cell_dir / name).exists(), name
    assert not (cell_dir / "checkpoints").exists() and not (cell_dir / "model").exists()  # cleaned up

    # the baseline trained on exactly the labeled split of the runs with the same seed
    def labeled_ids(arm, seed):
        d = tmp_path / "grid" / "prompt" / "in_source" / arm / "20" / f"seed{seed}"
        return json.loads((d / "split_manifest.json").read_text())["labeled_ids"]

    assert labeled_ids("tfidf", 0) == labeled_ids("supervised", 0) == labeled_ids("fixmatch-drop", 0)
    assert labeled_ids("tfidf", 0) != labeled_ids("tfidf", 1)

    # a rerun skips everything
    again = GridRunner(grid, progress=False).run()
    assert again.ran == [] and len(again.skipped_done) == 6

    report = build_report(grid)
    md = report["markdown"]
    # a task switched off by an empty axis (as configs/paper_cpu_mpnet.yaml does) has no cells, no
    # tables and no plots, and the rest of the report is unchanged
    off = make_grid(tasks={"prompt": {}, "response": {"budgets": []}})
    off_md = build_report(off, tmp_path / "report_off")["markdown"]
    assert "response task" not in off_md and "| supervised |" in off_md
    assert "| method | 20 · wildguardtest | 20 · oaimod | 20 · xstest | 20 · aegis |" in md
    for row in ("| supervised |", "| FixMatch + word drop |", "| TF-IDF |"):
        assert row in md
    sup = pd.read_csv(tmp_path / "grid" / "report" / "summary.csv")
    wgt = sup[(sup.arm == "supervised") & (sup.test_set == "wildguardtest")].iloc[0]
    cells = pd.read_csv(tmp_path / "grid" / "report" / "cells.csv")
    f1s = cells[(cells.arm == "supervised") & (cells.test_set == "wildguardtest")].f1
    assert wgt.n_seeds == 2 and wgt.f1_mean == pytest.approx(f1s.mean()) and wgt.f1_std == pytest.approx(f1s.std())
    assert f"{wgt.f1_mean:.3f} ± {wgt.f1_std:.3f}" in md
    assert "F1 minus supervised (paired by seed)" in md
    # the paired bootstrap interval, from the scores both arms saved, on the same examples and seeds
    from guardmatch.evaluation.bootstrap import paired_bootstrap_f1

    def saved(arm, seed, what):
        d = tmp_path / "grid" / "prompt" / "in_source" / arm / "20" / f"seed{seed}" / "eval" / "scores"
        return np.load(d / f"wildguardtest.{what}.npy", allow_pickle=False)

    iv = paired_bootstrap_f1(saved("supervised", 0, "labels"), [saved("fixmatch-drop", s, "scores") for s in (0, 1)],
                             [saved("supervised", s, "scores") for s in (0, 1)], n_boot=1000)
    fm_row = next(line for line in md.split("F1 minus supervised")[1].splitlines() if "FixMatch + word drop" in line)
    assert f"{iv.mean:+.3f}" in fm_row and f"[{iv.lo:+.3f}, {iv.hi:+.3f}]" in fm_row
    assert len(cells) == 6 * 4
    # the published numbers beside ours, only at the grid's budgets
    ours = md.split("### prompt: ours beside the paper")[1].split("###")[0]
    fm = sup[(sup.arm == "fixmatch-drop") & (sup.test_set == "oaimod")].iloc[0]
    assert (f"| supervised | 20 | wildguardtest | 0.748 | {wgt.f1_mean:.3f} ± {wgt.f1_std:.3f} | "
            f"{wgt.f1_mean - 0.748:+.3f} |") in ours
    assert f"| FixMatch + word drop (paper: OpusMT) | 20 | oaimod | 0.500 | {fm.f1_mean:.3f} ± {fm.f1_std:.3f} |" in ours
    assert "0.828" not in ours
    compute = md.split("## Compute")[1]
    assert "| encoding (min) | training (min) | evaluation (min) |" in compute
    assert (cells.drop_duplicates("path").training_s > 0).all()  # every cell's own training time
    plots = report["plots"]
    assert any("f1_prompt_in_source_wildguardtest" in p for p in plots)
    assert any("pr_prompt_wildguardtest_20" in p for p in plots)
    for p in plots:
        assert open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    data = json.loads((tmp_path / "grid" / "report" / "results.json").read_text())
    assert data["cells_done"] == 6 and data["cells_total"] == 6


def test_changed_config_is_stale_until_rerun_changed(make_grid):
    grid = make_grid(seeds=[0])
    assert len(GridRunner(grid, progress=False).run().ran) == 3
    changed = make_grid(seeds=[0], base={**grid.base, "optim": {**grid.base["optim"], "max_steps": 4}})
    with pytest.raises(StaleCellsError) as err:
        GridRunner(changed, progress=False).run()
    assert "prompt/in_source/supervised/20/seed0" in str(err.value) and "tfidf" not in str(err.value)
    rerun = GridRunner(changed, progress=False, rerun_changed=True).run()
    assert sorted(rerun.ran) == ["prompt/in_source/fixmatch-drop/20/seed0", "prompt/in_source/supervised/20/seed0"]
    steps = json.loads((rerun_dir := changed.output_dir) and open(
        f"{rerun_dir}/prompt/in_source/supervised/20/seed0/run.json").read())["provenance"]["max_steps"]
    assert steps == 4


def test_cells_without_views_are_skipped_with_the_fill_command(make_grid, tmp_path, train_slice):
    partial = write_views(tmp_path / "partial-views", train_slice, name="half", every=2)
    grid = make_grid(seeds=[0], augmenters={"half": {"cache": str(partial), "min_coverage": 0.9}},
                     baselines={})
    summary = GridRunner(grid, progress=False).run()
    assert summary.ran == ["prompt/in_source/supervised/20/seed0"]
    (key, why), = summary.skipped_views.items()
    assert key == "prompt/in_source/fixmatch-half/20/seed0"
    assert "cover 5" in why and "guardmatch augment --augmenter half" in why
    states = {p.cell.key: p.state for p in GridRunner(grid, progress=False).status()}
    assert states[key] == "skipped"
    md = build_report(grid, plots=False)["markdown"]
    assert "## Cells not run" in md and "| prompt/in_source/fixmatch-half | skipped | 1 | views of 'half' cover" in md
    # an --only filter runs just that subset
    only = GridRunner(grid, progress=False, only={"arm": {"supervised"}})
    assert [c.key for c in only.cells()] == ["prompt/in_source/supervised/20/seed0"]


def test_grid_command_status_and_report_only(make_grid, tmp_path):
    import yaml
    from typer.testing import CliRunner

    from guardmatch.cli.main import app

    grid = make_grid(seeds=[0], baselines={})
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(yaml.safe_dump(grid.model_dump(mode="json")))
    runner = CliRunner()
    dry = runner.invoke(app, ["grid", "--config", str(cfg), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "pending  prompt/in_source/supervised/20/seed0" in dry.stdout
    ran = runner.invoke(app, ["grid", "--config", str(cfg), "--quiet", "--no-plots", "--only", "arm=supervised"])
    assert ran.exit_code == 0, ran.output
    assert "| method | 20 · wildguardtest |" in ran.stdout
    status = runner.invoke(app, ["grid", "--config", str(cfg), "--status", "--json"])
    states = {c["key"]: c["state"] for c in json.loads(status.stdout)}
    assert states == {"prompt/in_source/supervised/20/seed0": "done", "prompt/in_source/fixmatch-drop/20/seed0": "pending"}
    text = runner.invoke(app, ["grid", "--config", str(cfg), "--status"])
    assert "estimated remaining" in text.stdout
    # the pending FixMatch cell has only a supervised cell to be timed from: the estimate says so
    assert "1 remaining cell(s) timed from cells of another kind" in " ".join(text.stdout.split())
    bad = runner.invoke(app, ["grid", "--config", str(cfg), "--mode", "fast"])
    assert bad.exit_code != 0
