"""Learning from the deployment's own traffic (issue 14): the deployment-split protocol end to end.

    python benchmarks/deployment.py views                  # EDA views of every deployment pool (shipped views/)
    guardmatch grid --config configs/deployment_frozen.yaml  # the SSL cells: pool = in-source / deployment / both
    python benchmarks/deployment.py report [--models 1]    # label shift + thresholds; tables

Protocol (:mod:`guardmatch.data.deployment`, seed 20251203): every external test set (prompt task:
OAIMod, XSTest, Aegis; response task: WildGuardTest responses, XSTest responses) is split, label-
stratified and disjoint by text, into a *deployment pool* (labels hidden; unlabeled text for SSL and
for estimating the harmful rate) and an *evaluation half*. Every number here is on the evaluation
halves (``<set>@eval``); WildGuardTest prompts stay whole (in-source test set). The pools' labels
are read only by :meth:`DeploymentSplit.diagnostic_pool_labels`, for the "true rate" column of the
label-shift table (a diagnostic, named as such).

``report`` reads the grid's saved models (``runs/grid/deployment_frozen``), and for the supervised,
FixMatch (in-source pool) and FixMatch (in-source + deployment pools) models of the first
``--models`` seeds: estimates each deployment pool's harmful rate by EM
on the model's calibrated scores (Saerens et al. 2002) with a bootstrap interval, adapts the
threshold to it, and reports F1 on the evaluation half before and after. Writes
``benchmarks/results/deployment.json`` and ``deployment.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from guardmatch.augment.filters import QualityFilter
from guardmatch.augment.registry import build_augmenter
from guardmatch.augment.runner import augment
from guardmatch.data.deployment import DEPLOYMENT_SEED, DEPLOYMENT_SETS, deployment_splits, save_manifests
from guardmatch.data.example import Task, split_inputs
from guardmatch.data.suites import load_suite

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GRID = ROOT / "runs" / "grid" / "deployment_frozen"


def splits(task: Task) -> dict:
    suite = load_suite(task.value, None, False)
    return deployment_splits(suite.sets, task, seed=DEPLOYMENT_SEED, names=DEPLOYMENT_SETS[task])


def make_views() -> None:
    """EDA (2 views) of every deployment pool text, into the shipped EDA cache; manifests of the splits."""
    manifests = {}
    for task in (Task.PROMPT, Task.RESPONSE):
        sp = splits(task)
        manifests.update({f"{task.value}/{k}": v for k, v in sp.items()})
        for name, split in sp.items():
            aug = build_augmenter("eda", {})
            try:
                rep = augment(split.pool, aug, task, 2, cache_root=ROOT, quality_filter=QualityFilter(), progress=False,
                              command=f"python benchmarks/deployment.py views  # {task.value}/{name}")
            finally:
                aug.close()
            print(json.dumps({"task": task.value, "set": name, "pool": len(split.pool),
                              **{k: rep.summary()[k] for k in ("attempts", "accepted", "complete")}}), flush=True)
    save_manifests(manifests, RESULTS / "deployment_splits.json")


def _f1(y: np.ndarray, p: np.ndarray, t: float) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, p >= t, zero_division=0))


def label_shift_rows(models: int) -> list[dict[str, Any]]:
    """Per (model, set): estimated vs true pool rate, threshold before/after, F1 on the evaluation half."""
    from guardmatch.evaluation.label_shift import adapt_threshold, estimate_prior, source_prior_of
    from guardmatch.model import GuardClassifier

    rows = []
    for task in (Task.PROMPT, Task.RESPONSE):
        sp = splits(task)
        cells = sorted(GRID.glob(f"{task.value}/*/*/200/seed*/model/guardmatch.json"))
        wanted = {("in_source", "supervised"), ("in_source", "fixmatch-eda"), ("in_source_plus_deployment", "fixmatch-eda")}
        cells = [c for c in cells if (c.parts[-6], c.parts[-5]) in wanted and int(c.parts[-3][4:]) < models]
        for cfg_file in cells:
            model = GuardClassifier.from_pretrained(cfg_file.parent)
            prior = source_prior_of(model.config)
            for name, split in sp.items():
                t0 = time.time()

                est = estimate_prior(model.score(*split_inputs(split.pool, task), batch_size=64), prior, bootstrap=200)
                y = np.array([ex.label for ex in split.evaluation])
                p_eval = model.score(*split_inputs(split.evaluation, task), batch_size=64)
                base = float(model.config.threshold)
                adapted = adapt_threshold(base, prior, est.prior)
                hidden = split.diagnostic_pool_labels()
                rows.append({
                    "task": task.value, "model": str(cfg_file.parent.relative_to(GRID)), "set": f"{name}@eval",
                    "source_prior": prior, "estimated_rate": est.prior, "interval": [est.low, est.high],
                    "true_pool_rate_diagnostic": sum(hidden.values()) / len(hidden),
                    "threshold": base, "adapted_threshold": adapted,
                    "f1_before": _f1(y, p_eval, base), "f1_after": _f1(y, p_eval, adapted),
                    "n_pool": len(split.pool), "n_eval": len(split.evaluation), "seconds": round(time.time() - t0, 1)})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def grid_rows() -> list[dict[str, Any]]:
    results = GRID / "results.json"
    if not results.is_file():
        return []
    return json.loads(results.read_text())


def report(models: int) -> None:
    shift = label_shift_rows(models)
    out = {"protocol": {"seed": DEPLOYMENT_SEED, "sets": {t.value: list(DEPLOYMENT_SETS[t]) for t in Task},
                        "split_manifests": "benchmarks/results/deployment_splits.json"},
           "label_shift": shift}
    (RESULTS / "deployment.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = ["# Deployment protocol: label shift and adapted thresholds", "",
             "EM (Saerens et al. 2002) on each model's calibrated scores of the deployment pool (labels hidden); "
             "the true pool rate is a diagnostic, read only here. F1 on the evaluation half at the model's threshold "
             "and at the threshold adapted to the estimated rate.", "",
             "| task | set | model | est. rate [95% CI] | true pool rate (diag.) | threshold | F1 before | F1 after |",
             "|---|---|---|---|---|---|---|---|"]
    for r in shift:
        lines.append(f"| {r['task']} | {r['set']} | {r['model'].split('/model')[0]} | {r['estimated_rate']:.3f} "
                     f"[{r['interval'][0]:.3f}, {r['interval'][1]:.3f}] | {r['true_pool_rate_diagnostic']:.3f} | "
                     f"{r['threshold']:.3f} -> {r['adapted_threshold']:.3f} | {r['f1_before']:.3f} | {r['f1_after']:.3f} |")
    (RESULTS / "deployment.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["views", "report"])
    ap.add_argument("--models", type=int, default=1, help="seeds per model kind in the label-shift table")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    if args.stage == "views":
        make_views()
    else:
        report(args.models)


if __name__ == "__main__":
    sys.exit(main())
