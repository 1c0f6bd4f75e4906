"""The grid's report: tables in the paper's layout, CSV/JSON, goal checks and plots.

Tables (one per task and pool): rows are method x augmenter (supervised and the baselines once),
columns the test sets per label budget, cells ``mean ± std`` of harmful-class F1 over seeds
(``(n=k)`` where fewer seeds than the grid's are finished). Then, per task, the change in F1 of
each SSL row against supervised on the *same* splits (paired by seed), the goal check of issue 7
(SSL ≥ +4 F1 over supervised on the main test set at 200 labels with no loss elsewhere, and above
SetFit), and the effect of widening the unlabeled pool.

Files written under ``<grid out>/report/`` (or ``out_dir``): ``report.md``, ``cells.csv`` (one row
per cell and test set, every metric), ``summary.csv`` (aggregated), ``results.json`` and
``plots/*.png``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from guardmatch.data.example import Task
from guardmatch.grid.cells import Cell, uses_unlabeled
from guardmatch.grid.config import GridConfig
from guardmatch.grid.store import read_cell_file

METRICS = ("f1", "precision", "recall", "auprc", "ece", "fpr")


# ----------------------------------------------------------------------------- collecting


def _row_name(grid: GridConfig, method: str, augmenter: str | None, baseline: bool = False) -> str:
    if baseline:
        return grid.label("baseline", method)
    name = grid.label("method", method)
    return name if augmenter is None else f"{name} + {grid.label('augmenter', augmenter)}"


def row_label(grid: GridConfig, cell: Cell) -> str:
    return _row_name(grid, cell.method, cell.augmenter, cell.kind == "baseline")


def arm_label(grid: GridConfig, arm: str) -> str:
    """Display name of an arm key (``multimatch-llm-rewrite`` -> ``MultiMatch + LLM rewrite``)."""
    if arm in grid.baselines or arm in grid.methods:
        return _row_name(grid, arm, None, baseline=arm in grid.baselines)
    for method in grid.methods:
        augmenter = arm.removeprefix(f"{method}-")
        if augmenter != arm and augmenter in grid.augmenters:
            return _row_name(grid, method, augmenter)
    return arm


def _plans(grid: GridConfig):
    from rich.console import Console

    from guardmatch.grid.runner import GridRunner

    return GridRunner(grid, console=Console(quiet=True), progress=False).plan()


TIMING_PARTS = (("encoding", "features"), ("training", "train"), ("evaluation", "eval"))
"""Columns of the compute table and the run timings (``run.json``) they come from."""


def collect(grid: GridConfig, plans=None) -> pd.DataFrame:
    """One row per finished cell and test set (read from the cells' directories). Only cells
    computed with the grid's current config count (a *stale* cell is listed as not run)."""
    rows: list[dict[str, Any]] = []
    order: dict[str, int] = {}
    plans = plans if plans is not None else _plans(grid)
    for i, plan in enumerate(plans):
        cell = plan.cell
        order.setdefault(cell.arm, i)
        if plan.state != "done":
            continue
        record = cast(dict[str, Any], read_cell_file(plan.path))  # state "done": plan() read this cell.json
        info = record.get("info") or {}
        for test_set, m in (record.get("metrics") or {}).items():
            rows.append({
                "task": cell.task.value, "pool": cell.pool, "kind": cell.kind, "method": cell.method,
                "augmenter": cell.augmenter or "", "arm": cell.arm, "row": row_label(grid, cell),
                "budget": str(cell.budget), "seed": cell.seed, "test_set": test_set,
                "labeled": info.get("labeled"), "unlabeled": info.get("unlabeled"),
                **{k: m.get(k) for k in (*METRICS, "n", "positives", "threshold", "accuracy")},
                "elapsed_s": record.get("elapsed_s"), "cpu_s": record.get("cpu_s"),
                **{f"{part}_s": (record.get("timings") or {}).get(f"{key}_s") for part, key in TIMING_PARTS},
                "view_coverage": info.get("view_coverage"), "identity_views": info.get("identity_views"),
                "order": order[cell.arm], "path": record.get("path"),
            })
    return pd.DataFrame(rows)


def aggregate(df: pd.DataFrame, ddof: int = 1) -> pd.DataFrame:
    """Mean, std and seed count per (task, pool, row, budget, test set) for every metric."""
    if df.empty:
        return df
    keys = ["task", "pool", "kind", "method", "augmenter", "arm", "row", "budget", "test_set"]
    agg: dict[str, Any] = {}
    for m in METRICS:
        agg[f"{m}_mean"] = (m, "mean")
        agg[f"{m}_std"] = (m, lambda s, d=ddof: float(s.std(ddof=d)) if len(s) > d else float("nan"))
    agg["n_seeds"] = ("seed", "nunique")
    agg["labeled"] = ("labeled", "median")
    agg["order"] = ("order", "min")
    return df.groupby(keys, dropna=False, sort=False).agg(**agg).reset_index()


# ----------------------------------------------------------------------------- formatting


def _fmt(mean: float, std: float, n: int, expected: int) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    s = f"{mean:.3f}" + (f" ± {std:.3f}" if std == std else "")
    return s + (f" (n={n})" if n < expected else "")


def _set_order(grid: GridConfig, df: pd.DataFrame, task: str) -> list[str]:
    sets = list(dict.fromkeys(df[df.task == task].test_set))
    return sets


def _budget_order(grid: GridConfig, task: str) -> list[str]:
    return [str(b) for b in grid.task_budgets(Task(task))]


def main_table(grid: GridConfig, summary: pd.DataFrame, task: str, pool: str, metric: str = "f1") -> str:
    """Rows method x augmenter (+ supervised, baselines); columns test sets per budget."""
    first_pool = grid.tasks[Task(task)].pools[0]
    sub = summary[(summary.task == task) & ((summary.pool == pool) |
                                            ((summary.pool == first_pool) & (summary.kind == "baseline")) |
                                            ((summary.pool == first_pool) & (summary.augmenter == "")))]
    if sub.empty:
        return "_no finished cells_\n"
    budgets = [b for b in _budget_order(grid, task) if b in set(sub.budget)]
    pool_budgets = grid.pools[pool].budgets
    if pool != first_pool and pool_budgets is not None:  # a pool run at some budgets only
        budgets = [b for b in budgets if b in {str(x) for x in pool_budgets}]
    sets = _set_order(grid, summary, task)
    header = "| method | " + " | ".join(f"{b} · {s}" for b in budgets for s in sets) + " |"
    lines = [header, "|---|" + "---:|" * (len(budgets) * len(sets))]
    rows = sub.assign(_k=(sub.kind == "baseline").astype(int)).sort_values(["_k", "order"])
    expected = len(grid.seeds)
    for row in dict.fromkeys(rows.row):
        r = sub[sub.row == row]
        cells = []
        for b in budgets:
            for s in sets:
                hit = r[(r.budget == b) & (r.test_set == s)]
                if hit.empty:
                    cells.append("–")
                else:
                    h = hit.iloc[0]
                    cells.append(_fmt(h[f"{metric}_mean"], h[f"{metric}_std"], int(h.n_seeds), expected))
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell_scores(path: Any, test_set: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(labels, P(harmful)) a finished cell saved for ``test_set`` under ``eval/scores``, or None."""
    if not isinstance(path, str) or not path:
        return None
    from guardmatch.grid.plots import _safe

    d = Path(path) / "eval" / "scores"
    try:
        return (np.load(d / f"{_safe(test_set)}.labels.npy", allow_pickle=False),
                np.load(d / f"{_safe(test_set)}.scores.npy", allow_pickle=False))
    except (FileNotFoundError, ValueError):
        return None


def _paired_interval(ref_paths: dict[int, str], paths: dict[int, str], test_set: str, threshold: float,
                     n_boot: int) -> dict[str, float] | None:
    """Bootstrap interval (test examples and seeds) of F1 minus the reference's, on the common seeds."""
    from guardmatch.evaluation.bootstrap import paired_bootstrap_f1

    labels, a, b = None, [], []
    for seed in sorted(set(ref_paths) & set(paths)):
        ra, rb = _cell_scores(paths[seed], test_set), _cell_scores(ref_paths[seed], test_set)
        if ra is None or rb is None:
            continue
        if labels is None:
            labels = ra[0]
        if not (np.array_equal(ra[0], labels) and np.array_equal(rb[0], labels)):
            return None  # not the same test examples: no pairing
        a.append(ra[1])
        b.append(rb[1])
    if labels is None or not a:
        return None
    iv = paired_bootstrap_f1(labels, a, b, threshold=threshold, n_boot=n_boot)
    return {"ci_lo": iv.lo, "ci_hi": iv.hi, "ci_seeds": iv.seeds}


def paired_deltas(df: pd.DataFrame, task: str, pool: str, budget: str, reference: str = "supervised",
                  first_pool: str = "in_source", n_boot: int = 1000,
                  reference_budget: str | None = None) -> pd.DataFrame:
    """F1 of each row minus the reference row, per seed (same labeled split), then mean/std, and a
    95 % paired bootstrap interval over test examples and seeds where the cells saved their scores
    (``n_boot=0``: no interval). ``reference_budget``: take the reference at another budget (e.g.
    supervised on all labels); the reference arm at ``budget`` is then one of the rows."""
    ref_budget = reference_budget or budget
    base_rows = df[(df.task == task) & (df.pool == first_pool) & (df.arm == reference) & (df.budget == ref_budget)]
    if base_rows.empty:
        return pd.DataFrame()
    base = base_rows.set_index(["seed", "test_set"]).f1
    others = df[(df.task == task) & (df.budget == budget) & ((df.arm != reference) | (ref_budget != budget)) &
                ((df.pool == pool) | (df.kind == "baseline"))]
    out = []
    for (row, arm, kind), g in others.groupby(["row", "arm", "kind"], sort=False):
        for test_set, gs in g.groupby("test_set", sort=False):
            d = [r.f1 - base.get((r.seed, test_set), np.nan) for r in gs.itertuples()]
            d = [x for x in d if x == x]
            if d:
                entry: dict[str, Any] = {
                    "row": row, "arm": arm, "kind": kind, "test_set": test_set, "delta_mean": float(np.mean(d)),
                    "delta_std": float(np.std(d, ddof=1)) if len(d) > 1 else float("nan"), "n": len(d),
                    "order": int(gs.order.min())}
                if n_boot:
                    ref = base_rows[base_rows.test_set == test_set]
                    threshold = float(gs.threshold.iloc[0]) if gs.threshold.notna().any() else 0.5
                    iv = _paired_interval(dict(zip(ref.seed, ref.path)), dict(zip(gs.seed, gs.path)), test_set,
                                          threshold, n_boot)
                    entry.update(iv or {})
                out.append(entry)
    return pd.DataFrame(out)


def _delta_fmt(r: pd.Series) -> str:
    m, sd = r["delta_mean"], r["delta_std"]
    s = f"{m:+.3f}" + (f" ± {sd:.3f}" if sd == sd else "")
    lo, hi = r.get("ci_lo"), r.get("ci_hi")
    if lo is not None and lo == lo:
        s += f" [{lo:+.3f}, {hi:+.3f}]"
    return s


def view_comparison(grid: GridConfig, df: pd.DataFrame, task: str, n_boot: int = 1000) -> str:
    """``report.compare_views``: method + view A minus method + view B, per seed (same labels), on the
    first pool, with a 95 % paired bootstrap interval over test examples and seeds."""
    first_pool = grid.tasks[Task(task)].pools[0]
    runs = df[(df.task == task) & (df.pool == first_pool) & (df.kind == "run")]
    sets = list(dict.fromkeys(runs.test_set))
    parts = []
    for view_a, view_b in grid.report.compare_views:
        lines = []
        for budget in _budget_order(grid, task):
            for method in grid.methods:
                a = runs[(runs.method == method) & (runs.augmenter == view_a) & (runs.budget == budget)]
                b = runs[(runs.method == method) & (runs.augmenter == view_b) & (runs.budget == budget)]
                if a.empty or b.empty:
                    continue
                cells = []
                for test_set in sets:
                    fa = a[a.test_set == test_set].set_index("seed")
                    fb = b[b.test_set == test_set].set_index("seed")
                    seeds = sorted(set(fa.index) & set(fb.index))
                    if not seeds:
                        cells.append("–")
                        continue
                    d = [float(fa.f1[s] - fb.f1[s]) for s in seeds]
                    entry = {"delta_mean": float(np.mean(d)),
                             "delta_std": float(np.std(d, ddof=1)) if len(d) > 1 else float("nan")}
                    if n_boot:
                        threshold = float(fa.threshold.iloc[0]) if fa.threshold.notna().any() else 0.5
                        entry.update(_paired_interval(dict(zip(fb.index, fb.path)), dict(zip(fa.index, fa.path)),
                                                      test_set, threshold, n_boot) or {})
                    cells.append(_delta_fmt(pd.Series(entry)) + f" (n={len(d)})")
                lines.append(f"| {grid.label('method', method)} | {budget} | " + " | ".join(cells) + " |")
        if lines:
            parts.append(f"**{grid.label('augmenter', view_a)}** minus **{grid.label('augmenter', view_b)}**, "
                         "same method and seed (mean ± std over seeds [95 % paired bootstrap interval], n seeds):\n\n"
                         + f"| method | labels | {' | '.join(sets)} |\n|---|---:|" + "---:|" * len(sets) + "\n"
                         + "\n".join(lines) + "\n")
    return "\n".join(parts)


def delta_table(deltas: pd.DataFrame, sets: list[str]) -> str:
    if deltas.empty:
        return "_no paired cells yet_\n"
    lines = ["| method | " + " | ".join(sets) + " |", "|---|" + "---:|" * len(sets)]
    for row in dict.fromkeys(deltas.sort_values(["kind", "order"], ascending=[False, True]).row):
        r = deltas[deltas.row == row].set_index("test_set")
        lines.append(f"| {row} | " + " | ".join(_delta_fmt(r.loc[s]) if s in r.index else "–" for s in sets) + " |")
    return "\n".join(lines) + "\n"


def goal_check(grid: GridConfig, df: pd.DataFrame, summary: pd.DataFrame) -> tuple[str, list[dict[str, Any]]]:
    goals = grid.report.goals
    if goals is None or goals.task not in grid.tasks:
        return "", []
    task, budget = goals.task.value, str(goals.budget)
    first_pool = grid.tasks[goals.task].pools[0]
    deltas = paired_deltas(df, task, first_pool, budget, first_pool=first_pool)
    if deltas.empty:
        return "_goal check: no paired supervised/SSL cells yet_\n", []
    runs = df.loc[df.kind == "run", ["arm", "method"]].drop_duplicates()
    ssl_arms = {arm for arm, method in zip(runs.arm, runs.method) if uses_unlabeled(grid.methods[method].algorithm)}
    ssl = deltas[(deltas.kind == "run") & deltas.arm.isin(ssl_arms)]  # not other supervised rows (ablations)
    sets = _set_order(grid, summary, task)
    ref_f1 = None
    if goals.beat_baseline:
        ref = summary[(summary.task == task) & (summary.budget == budget) & (summary.arm == goals.beat_baseline) &
                      (summary.test_set == goals.main_set)]
        ref_f1 = float(ref.f1_mean.iloc[0]) if not ref.empty else None
    results = []
    lines = [f"| SSL row | Δ {goals.main_set} [95 % interval] | worst Δ elsewhere | {goals.main_set} F1 vs "
             f"{grid.label('baseline', goals.beat_baseline) if goals.beat_baseline else '-'} | goal met |",
             "|---|---:|---:|---:|:---:|"]
    for row in dict.fromkeys(ssl.sort_values("order").row):
        r = ssl[ssl.row == row].set_index("test_set")
        if goals.main_set not in r.index:
            continue
        gain = float(r.loc[goals.main_set, "delta_mean"])
        lo, hi = (r.loc[goals.main_set].get(k) for k in ("ci_lo", "ci_hi"))
        interval = f" [{lo:+.3f}, {hi:+.3f}]" if lo is not None and lo == lo else ""
        others = [float(r.loc[s, "delta_mean"]) for s in sets if s != goals.main_set and s in r.index]
        worst = min(others) if others else float("nan")
        f1 = summary[(summary.task == task) & (summary.budget == budget) & (summary.row == row) &
                     (summary.pool == first_pool) & (summary.test_set == goals.main_set)].f1_mean
        f1 = float(f1.iloc[0]) if not f1.empty else float("nan")
        beats = None if ref_f1 is None else f1 > ref_f1
        met = gain >= goals.min_gain and (not others or worst >= -goals.max_loss) and beats is not False
        results.append({"row": row, "gain": gain, "gain_ci": [float(lo), float(hi)] if interval else None,
                        "worst_other": worst, "f1": f1, "baseline_f1": ref_f1, "beats_baseline": beats, "met": met})
        vs = "–" if ref_f1 is None else f"{f1:.3f} vs {ref_f1:.3f}"
        lines.append(f"| {row} | {gain:+.3f}{interval} | {worst:+.3f} | {vs} | {'yes' if met else 'no'} |")
    head = (f"Goal: at {budget} labels on the {task} task, SSL ≥ {goals.min_gain:+.2f} F1 over supervised "
            f"on {goals.main_set}, no loss (≥ {-goals.max_loss:+.2f}) on the other test sets"
            + (f", and above {grid.label('baseline', goals.beat_baseline)}" if goals.beat_baseline else "")
            + ". Deltas are paired by seed (same labeled split).\n\n")
    return head + "\n".join(lines) + "\n", results


def reference_table(grid: GridConfig, summary: pd.DataFrame, task: str) -> str:
    """Ours beside the published numbers (``report.reference``), one row per number the reference reports."""
    budgets = set(_budget_order(grid, task))
    refs = [r for r in grid.report.reference if r.task.value == task and str(r.budget) in budgets]
    if not refs:
        return ""
    name = grid.report.reference_name
    first_pool = grid.tasks[Task(task)].pools[0]
    lines = [f"| setting | labels | test set | {name} | ours | ours − {name} |", "|---|---:|---|---:|---:|---:|"]
    for r in refs:
        hit = summary[(summary.task == task) & (summary.pool == first_pool) & (summary.arm == r.arm) &
                      (summary.budget == str(r.budget)) & (summary.test_set == r.test_set)]
        label = hit.row.iloc[0] if not hit.empty else arm_label(grid, r.arm)
        label += f" ({name}: {r.setting})" if r.setting else ""
        if hit.empty:
            ours, diff = "not run", "–"
        else:
            h = hit.iloc[0]
            ours = _fmt(h.f1_mean, h.f1_std, int(h.n_seeds), len(grid.seeds))
            diff = f"{h.f1_mean - r.f1:+.3f}"
        lines.append(f"| {label} | {r.budget} | {r.test_set} | {r.f1:.3f} | {ours} | {diff} |")
    return "\n".join(lines) + "\n"


def pool_table(grid: GridConfig, df: pd.DataFrame, task: str) -> str:
    """Each SSL arm: F1 with the widened pool(s) minus F1 with the first pool, per test set."""
    tspec = grid.tasks[Task(task)]
    if len(tspec.pools) < 2:
        return ""
    first = tspec.pools[0]
    sets = list(dict.fromkeys(df[df.task == task].test_set))
    blocks = []
    for pool in tspec.pools[1:]:
        sub = df[(df.task == task) & (df.pool == pool) & (df.kind == "run")]
        if sub.empty:
            blocks.append(f"_pool {pool}: no finished cells yet_\n")
            continue
        lines = [f"Pool **{grid.label('pool', pool)}** vs **{grid.label('pool', first)}** (F1 {pool} → Δ vs {first}, "
                 "paired by seed):\n", "| method | budget | unlabeled | " + " | ".join(sets) + " |",
                 "|---|---|---:|" + "---:|" * len(sets)]
        for (row, arm, budget), g in sub.groupby(["row", "arm", "budget"], sort=False):
            ref = df[(df.task == task) & (df.pool == first) & (df.arm == arm) & (df.budget == budget)]
            ref = ref.set_index(["seed", "test_set"]).f1
            vals = []
            for s in sets:
                gs = g[g.test_set == s]
                d = [r.f1 - ref.get((r.seed, s), np.nan) for r in gs.itertuples()]
                d = [x for x in d if x == x]
                vals.append(f"{gs.f1.mean():.3f} ({np.mean(d):+.3f})" if d else (f"{gs.f1.mean():.3f}" if len(gs) else "–"))
            unl = g.unlabeled.dropna()
            lines.append(f"| {row} | {budget} | {int(unl.median()) if len(unl) else '?'} | " + " | ".join(vals) + " |")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def timing_table(df: pd.DataFrame) -> str:
    """Wall time per task and cell kind, split into encoding (cached lower-layer states or pooled
    vectors of texts and views), training and evaluation. View generation is not part of a cell:
    views are made once by ``guardmatch augment`` (its throughput is in the view cache's runs)."""
    if df.empty:
        return ""
    cells = df.drop_duplicates("path").copy()
    parts = [f"{part}_s" for part, _ in TIMING_PARTS]
    cells[parts] = cells[parts].apply(pd.to_numeric, errors="coerce")  # None where a cell has no such part
    g = cells.groupby(["task", "kind"], sort=False).agg(cells=("path", "count"), wall_s=("elapsed_s", "sum"),
                                                        cpu_s=("cpu_s", "sum"), **{c: (c, "sum") for c in parts})
    lines = ["| task | kind | cells | wall (min) | encoding (min) | training (min) | evaluation (min) | CPU (min) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for (task, kind), r in g.iterrows():
        split = " | ".join(f"{r[c] / 60:.1f}" if r[c] > 0 else "–" for c in parts)
        lines.append(f"| {task} | {kind} | {int(r.cells)} | {r.wall_s / 60:.1f} | {split} | {r.cpu_s / 60:.1f} |")
    total = g[["wall_s", *parts]].sum()
    lines.append(f"| all | | {int(g.cells.sum())} | {total.wall_s / 60:.1f} | "
                 + " | ".join(f"{total[c] / 60:.1f}" for c in parts) + f" | {g.cpu_s.sum() / 60:.1f} |")
    return "\n".join(lines) + "\n"


def not_run(grid: GridConfig, plans) -> str:
    """Stale, skipped (views missing) and failed cells, grouped by row and reason."""
    from guardmatch.grid.store import ResultsStore

    path = Path(grid.output_dir) / "results.sqlite"
    rows = {}
    if path.exists():
        with ResultsStore(path) as store:
            rows = {r["key"]: r for r in store.rows()}
    groups: dict[tuple[str, str, str], tuple[int, list[float]]] = {}
    for plan in plans:
        cell = plan.cell
        row = rows.get(cell.key)
        if plan.state == "stale":
            status, reason = "stale", "computed with a different config (rerun with --rerun-changed)"
        elif plan.state != "done" and row and row["status"] in ("skipped", "failed"):
            status, reason = row["status"], (row.get("error") or "").split(";")[0].split("\n")[0]
        else:
            continue
        cover = re.search(r"cover (\d+(?:\.\d+)?)% of this cell's pool of \d+", reason)
        if cover:  # one row per augmenter gap, with the range of coverages
            reason = reason.replace(cover.group(0), "cover {range} of the cells' pools")
        key = (f"{cell.task.value}/{cell.pool}/{cell.arm}", status, reason)
        n, covers = groups.get(key, (0, []))
        groups[key] = (n + 1, covers + ([float(cover.group(1))] if cover else []))
    if not groups:
        return ""
    lines = ["| cells | status | n | reason |", "|---|---|---:|---|"]
    for (arm, status, reason), (n, covers) in sorted(groups.items()):
        if covers:
            lo, hi = min(covers), max(covers)
            reason = reason.replace("{range}", f"{lo:.1f}%" if lo == hi else f"{lo:.1f}–{hi:.1f}%")
        lines.append(f"| {arm} | {status} | {n} | {reason} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the report


def schedule_line(grid: GridConfig) -> str:
    """How long every cell trains, from the base optimiser settings (the report's header states it)."""
    optim = dict(grid.base.get("optim") or {})
    epochs, passes = optim.get("epochs"), optim.get("pool_passes")
    if epochs is None and passes is None:
        return f"Schedule: a fixed {optim.get('max_steps', 300)} steps per cell.\n"
    parts = []
    if epochs is not None:
        parts.append(f"{epochs:g} epochs over the labels (every method)")
    if passes is not None:
        parts.append(f"at least {passes:g} passes over the unlabeled pool (SSL methods; the longer schedule wins)")
    return "Schedule by passes: " + "; ".join(parts) + " (each cell's steps are in cells.csv).\n"


def build_report(grid: GridConfig, out_dir: str | Path | None = None, *, plots: bool = True) -> dict[str, Any]:
    """Write ``report.md``, ``cells.csv``, ``summary.csv``, ``results.json`` and plots; return paths."""
    out = Path(out_dir) if out_dir else Path(grid.output_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    plans = _plans(grid)
    df = collect(grid, plans)
    summary = aggregate(df, grid.report.std_ddof)
    total = len(plans)
    done = df.path.nunique() if not df.empty else 0
    parts = [f"# {grid.name}: results\n", grid.description.strip() + "\n" if grid.description else "",
             f"{done} of {total} cells finished. Harmful-class F1 at threshold 0.5, mean ± "
             f"{'sample' if grid.report.std_ddof else 'population'} std over seeds {grid.seeds}; the seed also draws "
             "the labeled split, so every method of a seed sees the same labels.\n", schedule_line(grid)]
    goals_md = ""
    goals: list[dict[str, Any]] = []
    if not df.empty:
        for task in [t.value for t in grid.tasks]:
            tspec = grid.tasks[Task(task)]
            sets = _set_order(grid, summary, task)
            if not sets:
                continue
            for pool in tspec.pools:
                parts.append(f"## {task} task · pool {grid.label('pool', pool)}\n")
                parts.append(main_table(grid, summary, task, pool))
            for budget in _budget_order(grid, task):
                references: list[tuple[str | None, str, str]] = [
                    (None, "F1 minus supervised (paired by seed)", "")]
                if budget != "all" and int(budget) in grid.report.against_all_labels:
                    references.append(("all", "F1 minus supervised on all labels",
                                       " (paired by seed index: the all-label cells share their labels and differ "
                                       "in initialisation)"))
                for reference_budget, title, pairing in references:
                    deltas = paired_deltas(df, task, tspec.pools[0], budget, first_pool=tspec.pools[0],
                                           reference_budget=reference_budget)
                    if not deltas.empty:
                        parts.append(f"### {task} · {budget} labels: {title}\n\n"
                                     f"mean ± std over seeds{pairing} [95 % paired bootstrap interval over test "
                                     "examples and seeds, 1,000 replicates]\n")
                        parts.append(delta_table(deltas, sets))
            rt = reference_table(grid, summary, task)
            if rt:
                parts.append(f"### {task}: ours beside the {grid.report.reference_name}\n")
                parts.append(rt)
            vc = view_comparison(grid, df, task)
            if vc:
                parts.append(f"### {task}: view against view\n")
                parts.append(vc)
            pt = pool_table(grid, df, task)
            if pt:
                parts.append(f"### {task}: where the unlabeled data comes from\n")
                parts.append(pt)
        goals_md, goals = goal_check(grid, df, summary)
        if goals_md:
            parts.append("## Goal check\n")
            parts.append(goals_md)
        warn = df[df.identity_views.fillna(0) > 0].drop_duplicates("path") if "identity_views" in df else pd.DataFrame()
        if not warn.empty:
            share = (warn.identity_views / warn.unlabeled.clip(lower=1)).max()
            parts.append(f"Note: in {len(warn)} cell(s) up to {int(warn.identity_views.max())} pool texts "
                         f"({share:.2%} of the pool) had no cached view and were trained with their own text as the "
                         "strong view (`identity_views` in cells.csv).\n")
        missing = not_run(grid, plans)
        if missing:
            parts.append("## Cells not run\n")
            parts.append(missing)
        parts.append("## Compute\n")
        parts.append(timing_table(df))
    plot_files: list[str] = []
    if plots and not df.empty:
        from guardmatch.grid.plots import f1_vs_budget, pr_curves

        plot_files += f1_vs_budget(grid, summary, out / "plots")
        plot_files += pr_curves(grid, df, summary, out / "plots")
        if plot_files:
            parts.append("## Plots\n")
            parts.extend(f"- [{Path(p).name}](plots/{Path(p).name})\n" for p in plot_files)
    markdown = "\n".join(p for p in parts if p)
    (out / "report.md").write_text(markdown)
    df.drop(columns=["order"], errors="ignore").to_csv(out / "cells.csv", index=False)
    summary.drop(columns=["order"], errors="ignore").to_csv(out / "summary.csv", index=False)
    payload = {"grid": grid.name, "cells_total": total, "cells_done": done, "seeds": grid.seeds,
               "summary": json.loads(summary.drop(columns=["order"], errors="ignore").to_json(orient="records")),
               "goals": goals}
    (out / "results.json").write_text(json.dumps(payload, indent=2))
    return {"dir": str(out), "markdown": markdown, "plots": plot_files, "cells_done": done, "cells_total": total}
