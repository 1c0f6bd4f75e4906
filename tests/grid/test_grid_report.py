"""The report's goal check on a hand-made results frame: which rows count as SSL, and the arithmetic."""

from __future__ import annotations

import pandas as pd
import pytest

from guardmatch.errors import ConfigError
from guardmatch.grid import load_grid_config
from guardmatch.grid.report import aggregate, arm_label, goal_check, paired_deltas, view_comparison


def _rows(arm: str, method: str, augmenter: str, kind: str, f1: dict[str, list[float]], order: int,
          budget: str = "200") -> list[dict]:
    return [{"task": "prompt", "pool": "in_source", "kind": kind, "method": method, "augmenter": augmenter,
             "arm": arm, "row": arm, "budget": budget, "seed": seed, "test_set": test_set, "f1": value,
             "precision": None, "recall": None, "auprc": None, "ece": None, "fpr": None, "labeled": 200,
             "unlabeled": 0, "threshold": 0.5, "order": order, "path": None}
            for test_set, values in f1.items() for seed, value in enumerate(values)]


def test_goal_check_lists_ssl_rows_only_and_checks_gain_loss_and_baseline(tmp_path):
    grid = load_grid_config(data={
        "name": "g", "output_dir": str(tmp_path),
        "tasks": {"prompt": {}}, "budgets": [200], "seeds": [0, 1],
        "methods": {"supervised": {"algorithm": "supervised"},
                    "supervised-long": {"algorithm": "supervised", "overrides": {"optim": {"max_steps": 50}}},
                    "fixmatch": {"algorithm": "fixmatch"}},
        "augmenters": {"eda": {"cache": "eda"}},
        "baselines": {"setfit": {"kind": "setfit"}},
        "report": {"goals": {"min_gain": 0.04, "max_loss": 0.0, "beat_baseline": "setfit"}},
    })
    df = pd.DataFrame(
        _rows("supervised", "supervised", "", "run", {"wildguardtest": [0.70, 0.72], "xstest": [0.50, 0.52]}, 0)
        + _rows("supervised-long", "supervised-long", "", "run",
                {"wildguardtest": [0.80, 0.80], "xstest": [0.60, 0.60]}, 1)
        + _rows("fixmatch-eda", "fixmatch", "eda", "run", {"wildguardtest": [0.75, 0.77], "xstest": [0.52, 0.53]}, 2)
        + _rows("setfit", "setfit", "", "baseline", {"wildguardtest": [0.74, 0.74], "xstest": [0.4, 0.4]}, 3))
    text, results = goal_check(grid, df, aggregate(df))
    # the longer supervised row gains +0.09 but is no SSL row: only FixMatch is checked
    assert [r["row"] for r in results] == ["fixmatch-eda"]
    (fixmatch,) = results
    assert abs(fixmatch["gain"] - 0.05) < 1e-12              # (0.05 + 0.05) / 2
    assert abs(fixmatch["worst_other"] - 0.015) < 1e-12      # xstest: (0.02 + 0.01) / 2
    assert fixmatch["beats_baseline"] is True                # 0.76 > SetFit's 0.74
    assert fixmatch["met"] is True
    assert "supervised-long" not in text and "| fixmatch-eda |" in text


def test_arm_label_names_not_run_arms_like_finished_rows(tmp_path):
    grid = load_grid_config(data={
        "name": "g", "output_dir": str(tmp_path), "tasks": {"prompt": {}}, "budgets": [200], "seeds": [0],
        "methods": {"supervised": {"algorithm": "supervised"},
                    "fixmatch": {"algorithm": "fixmatch", "label": "FixMatch"},
                    "fixmatch-long": {"algorithm": "fixmatch", "label": "FixMatch (long)"}},
        "augmenters": {"llm-rewrite": {"cache": "llm", "label": "LLM rewrite"},
                       "long-eda": {"cache": "eda", "label": "EDA"}},
        "baselines": {"tfidf": {"kind": "tfidf_lr", "label": "TF-IDF + LR"}},
    })
    assert arm_label(grid, "fixmatch-llm-rewrite") == "FixMatch + LLM rewrite"
    assert arm_label(grid, "fixmatch-long-eda") == "FixMatch + EDA"   # only long-eda is an augmenter
    assert arm_label(grid, "fixmatch-long") == "FixMatch (long)"
    assert arm_label(grid, "tfidf") == "TF-IDF + LR"
    assert arm_label(grid, "unknown-arm") == "unknown-arm"


def test_view_comparison_pairs_views_by_method_and_seed(tmp_path):
    grid = load_grid_config(data={
        "name": "g", "output_dir": str(tmp_path), "tasks": {"prompt": {}}, "budgets": [200], "seeds": [0, 1],
        "methods": {"supervised": {"algorithm": "supervised"}, "fixmatch": {"algorithm": "fixmatch", "label": "FixMatch"}},
        "augmenters": {"llm": {"cache": "llm", "label": "LLM"}, "eda": {"cache": "eda", "label": "EDA"}},
        "report": {"compare_views": [["llm", "eda"]]},
    })
    df = pd.DataFrame(
        _rows("supervised", "supervised", "", "run", {"wildguardtest": [0.70, 0.72]}, 0)
        + _rows("fixmatch-llm", "fixmatch", "llm", "run", {"wildguardtest": [0.75, 0.70], "xstest": [0.6, 0.5]}, 1)
        + _rows("fixmatch-eda", "fixmatch", "eda", "run", {"wildguardtest": [0.71, 0.72], "xstest": [0.4, 0.4]}, 2))
    text = view_comparison(grid, df, "prompt", n_boot=0)
    row = next(line for line in text.splitlines() if line.startswith("| FixMatch | 200 |"))
    # wildguardtest: (0.04, -0.02) -> mean +0.010, sample std 0.042; xstest: (0.2, 0.1) -> +0.150 ± 0.071
    assert row == "| FixMatch | 200 | +0.010 ± 0.042 (n=2) | +0.150 ± 0.071 (n=2) |"
    assert "**LLM** minus **EDA**" in text


def test_compare_views_names_must_be_augmenters(tmp_path):
    with pytest.raises(ConfigError, match=r"report.compare_views\[0\]: unknown augmenter 'bt'"):
        load_grid_config(data={
            "name": "g", "output_dir": str(tmp_path), "tasks": {"prompt": {}},
            "methods": {"fixmatch": {"algorithm": "fixmatch"}}, "augmenters": {"llm": {"cache": "llm"}},
            "report": {"compare_views": [["llm", "bt"]]}})


def test_against_all_labels_subtracts_all_label_supervised_from_every_row_of_the_budget():
    df = pd.DataFrame(
        _rows("supervised", "supervised", "", "run", {"wildguardtest": [0.80, 0.82]}, 0, budget="2000")
        + _rows("fixmatch-llm", "fixmatch", "llm", "run", {"wildguardtest": [0.85, 0.83]}, 1, budget="2000")
        + _rows("supervised", "supervised", "", "run", {"wildguardtest": [0.86, 0.88]}, 0, budget="all")
        + _rows("fixmatch-llm", "fixmatch", "llm", "run", {"wildguardtest": [0.99, 0.99]}, 1, budget="200"))
    d = paired_deltas(df, "prompt", "in_source", "2000", n_boot=0, reference_budget="all").set_index("row")
    # supervised at 2,000 is now a row: (0.80 - 0.86, 0.82 - 0.88) = -0.06 each; FixMatch (-0.01, -0.05)
    assert sorted(d.index) == ["fixmatch-llm", "supervised"]
    assert abs(d.delta_mean["supervised"] + 0.06) < 1e-12 and abs(d.delta_std["supervised"]) < 1e-12
    assert abs(d.delta_mean["fixmatch-llm"] + 0.03) < 1e-12
    assert abs(d.delta_std["fixmatch-llm"] - 0.04 / 2 ** 0.5) < 1e-12   # sample std of (-0.01, -0.05)
    # the same-budget comparison is unchanged: supervised is the reference, not a row
    same = paired_deltas(df, "prompt", "in_source", "2000", n_boot=0)
    assert list(same.row) == ["fixmatch-llm"] and abs(same.delta_mean.iloc[0] - 0.03) < 1e-12


def test_against_all_labels_needs_the_budget_and_all(tmp_path):
    with pytest.raises(ConfigError, match=r"report.against_all_labels: budget 2000 needs both"):
        load_grid_config(data={
            "name": "g", "output_dir": str(tmp_path), "tasks": {"prompt": {}}, "budgets": [200, 2000],
            "methods": {"supervised": {"algorithm": "supervised"}},
            "report": {"against_all_labels": [2000]}})
