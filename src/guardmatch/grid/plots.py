"""Grid plots (matplotlib, Agg backend): F1 against the label budget, precision-recall curves.

* ``f1_<task>_<pool>_<test set>.png``: one line per method x augmenter (and baseline), x = labeled
  examples (log scale; ``all`` at its real count), error bars = std over seeds.
* ``pr_<task>_<test set>.png``: at ``report.pr_budget`` labels, for each method (and baseline) its
  best augmenter by mean F1 on that test set, and of its seeds the one with the median F1 (a
  typical run, not the luckiest); curves from the scores each run saved under ``eval/scores``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from guardmatch.data.example import Task
from guardmatch.grid.config import GridConfig


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def f1_vs_budget(grid: GridConfig, summary: pd.DataFrame, out: Path) -> list[str]:
    plt = _plt()
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for task in [t.value for t in grid.tasks]:
        tspec = grid.tasks[Task(task)]
        first = tspec.pools[0]
        for pool in tspec.pools:
            sub = summary[(summary.task == task) & ((summary.pool == pool) | (summary.pool == first) &
                                                    ((summary.kind == "baseline") | (summary.augmenter == "")))]
            for test_set in dict.fromkeys(sub.test_set):
                s = sub[sub.test_set == test_set]
                if s.budget.nunique() < 1:
                    continue
                fig, ax = plt.subplots(figsize=(7, 4.5))
                for row in dict.fromkeys(s.sort_values("order").row):
                    r = s[s.row == row].copy()
                    r["x"] = r.labeled.astype(float)
                    r = r.dropna(subset=["x"]).sort_values("x")
                    if r.empty:
                        continue
                    style = "--" if (r.kind == "baseline").all() else "-"
                    ax.errorbar(r.x, r.f1_mean, yerr=r.f1_std.fillna(0), label=row, marker="o", capsize=3,
                                linestyle=style)
                ax.set_xscale("log")
                ax.set_xlabel("labeled examples")
                ax.set_ylabel("harmful-class F1")
                ax.set_title(f"{task} · {test_set} · pool {grid.label('pool', pool)}")
                ax.grid(True, alpha=0.3)
                ax.legend(fontsize=7, loc="best")
                fig.tight_layout()
                path = out / _safe(f"f1_{task}_{pool}_{test_set}.png")
                fig.savefig(path, dpi=110)
                plt.close(fig)
                files.append(str(path))
    return files


def pr_curves(grid: GridConfig, df: pd.DataFrame, summary: pd.DataFrame, out: Path) -> list[str]:
    from sklearn.metrics import precision_recall_curve

    plt = _plt()
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for task in [t.value for t in grid.tasks]:
        budgets = [str(b) for b in grid.task_budgets(Task(task))]
        if not budgets:  # a task switched off (budgets: [])
            continue
        budget = str(grid.report.pr_budget) if str(grid.report.pr_budget) in budgets else budgets[0]
        first = grid.tasks[Task(task)].pools[0]
        sub = summary[(summary.task == task) & (summary.budget == budget) & (summary.pool == first)]
        for test_set in dict.fromkeys(sub.test_set):
            s = sub[sub.test_set == test_set]
            fig, ax = plt.subplots(figsize=(6, 5))
            drew = False
            for method in dict.fromkeys(s.sort_values("order").method):
                m = s[s.method == method].sort_values("f1_mean", ascending=False).iloc[0]
                runs = df[(df.task == task) & (df.pool == first) & (df.arm == m.arm) & (df.budget == budget) &
                          (df.test_set == test_set)].sort_values("f1")
                if runs.empty:
                    continue
                run = runs.iloc[(len(runs) - 1) // 2]
                scores = Path(run.path) / "eval" / "scores"
                name = _safe(test_set)
                try:
                    y = np.load(scores / f"{name}.labels.npy", allow_pickle=False)
                    p = np.load(scores / f"{name}.scores.npy", allow_pickle=False)
                except FileNotFoundError:
                    continue
                prec, rec, _ = precision_recall_curve(y, p)
                style = "--" if m.kind == "baseline" else "-"
                ax.plot(rec, prec, style, label=f"{m.row} (seed {run.seed}, F1 {run.f1:.2f}, AP {run.auprc:.2f})")
                drew = True
            if not drew:
                plt.close(fig)
                continue
            ax.set_xlabel("recall (harmful)")
            ax.set_ylabel("precision (harmful)")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            ax.grid(True, alpha=0.3)
            ax.set_title(f"{task} · {test_set} · {budget} labels\n(each method's best row by mean F1; its median seed)",
                         fontsize=10)
            ax.legend(fontsize=6.5, loc="lower left")
            fig.tight_layout()
            path = out / _safe(f"pr_{task}_{test_set}_{budget}.png")
            fig.savefig(path, dpi=110)
            plt.close(fig)
            files.append(str(path))
    return files
