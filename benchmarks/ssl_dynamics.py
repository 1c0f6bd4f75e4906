"""SSL training dynamics on real data: mask rate and pseudo-label accuracy over steps, per algorithm.

Part 1 reads the top-layer grid's prompt-task runs (MiniLM, 200 labels, EDA views, 150 steps,
B=16, mu=1; ``configs/paper_cpu.yaml``) and tabulates, per algorithm and seed, the WildGuardTest
F1 and the logged ``mask_rate`` / ``pseudo_label_acc`` (hidden pool labels, diagnostics only).

Part 2 (``--passes``) trains FixMatch and MarginMatch with several passes over the unlabeled pool
(mu=4, 200 steps: ~4 visits per pool example instead of < 1): MarginMatch's APM filter can only
differ from FixMatch once examples have been seen more than once.

    python benchmarks/ssl_dynamics.py [--grid runs/grid/paper_cpu] [--passes]

Writes benchmarks/results/ssl_dynamics.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
METHODS = ["supervised", "fixmatch-eda", "marginmatch-eda", "multimatch-eda"]
TEST_SETS = ("wildguardtest", "oaimod", "xstest", "aegis")


def read_run(path: Path) -> dict | None:
    if not (path / "run.json").exists():
        return None
    run = json.loads((path / "run.json").read_text())
    logs = [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    return {
        "f1": run.get("f1") or {},
        "train_s": run.get("timings", {}).get("train_s"),
        "curve": [{k: r[k] for k in ("step", "mask_rate", "pseudo_label_acc", "sup_loss", "unsup_loss") if k in r}
                  for r in logs],
    }


def grid_part(grid: Path, seeds: list[int]) -> dict:
    out: dict = {}
    for method in METHODS:
        for seed in seeds:
            cell = grid / "prompt" / "in_source" / method / "200" / f"seed{seed}"
            run = read_run(cell)
            if run:
                out.setdefault(method, {})[seed] = run
    return out


def passes_part(work: Path) -> dict:
    """FixMatch vs MarginMatch with ~4 passes over the pool (mu=4, 200 steps), seed 0."""
    from guardmatch.config import TrainConfig
    from guardmatch.training.run import run_training

    base = yaml.safe_load((ROOT / "configs" / "paper_cpu.yaml").read_text())["base"]
    out = {}
    for algorithm in ("fixmatch", "marginmatch"):
        cfg = json.loads(json.dumps(base))
        cfg.update({"algorithm": algorithm, "seed": 0, "output_dir": str(work / f"{algorithm}-mu4"),
                    "views": {"cache": "eda", "min_coverage": 0.99}})
        cfg["data"].update({"train": "wildguardtrain", "suite": "prompt", "labels": 200})
        cfg["optim"].update({"mu": 4, "max_steps": 200})
        run_dir = work / f"{algorithm}-mu4"
        if not (run_dir / "run.json").exists():
            run_training(TrainConfig.model_validate(cfg))
        out[algorithm] = read_run(run_dir)
    return out


def markdown(grid: dict, passes: dict | None) -> str:
    lines = ["## Prompt task, 200 labels, EDA views, top-2-layer MiniLM (150 steps, B=16, mu=1)", "",
             "| method | seed | WGT F1 | OAIMod | XSTest | Aegis | mask rate @25/75/150 "
             "| pseudo-label acc @25/75/150 | train s |",
             "|---|---:|---:|---:|---:|---:|---|---|---:|"]

    def at(curve, key, steps=(25, 75, 150)):
        vals = []
        for s in steps:
            row = next((r for r in curve if r["step"] == s), None)
            vals.append(f"{row[key]:.2f}" if row and key in row else "–")
        return " / ".join(vals)

    def f1s(run):
        return " | ".join(f"{run['f1'].get(s, float('nan')):.3f}" for s in TEST_SETS)

    for method, seeds in grid.items():
        for seed, run in sorted(seeds.items()):
            lines.append(f"| {method} | {seed} | {f1s(run)} | {at(run['curve'], 'mask_rate')} | "
                         f"{at(run['curve'], 'pseudo_label_acc')} | {run['train_s'] or 0:.0f} |")
    if passes:
        lines += ["", "## Several passes over the pool (mu=4, 200 steps, seed 0)", "",
                  "| method | WGT F1 | OAIMod | XSTest | Aegis | mask rate @50/100/200 | pseudo-label acc @50/100/200 |",
                  "|---|---:|---:|---:|---:|---|---|"]
        for method, run in passes.items():
            lines.append(f"| {method} | {f1s(run)} | {at(run['curve'], 'mask_rate', (50, 100, 200))} | "
                         f"{at(run['curve'], 'pseudo_label_acc', (50, 100, 200))} |")
    return "\n".join(lines) + "\n"


def plot(grid: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for method, seeds in grid.items():
        if method == "supervised" or 0 not in seeds:
            continue
        curve = seeds[0]["curve"]
        steps = [r["step"] for r in curve]
        axes[0].plot(steps, [r.get("mask_rate", float("nan")) for r in curve], label=method)
        axes[1].plot(steps, [r.get("pseudo_label_acc", float("nan")) for r in curve], label=method)
    axes[0].set_title("mask rate (seed 0)")
    axes[1].set_title("pseudo-label accuracy on the pool (seed 0)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=Path, default=ROOT / "runs" / "grid" / "paper_cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--passes", action="store_true", help="also train the mu=4 FixMatch/MarginMatch pair")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "ssl_dynamics")
    args = parser.parse_args()
    grid = grid_part(args.grid, args.seeds)
    passes = passes_part(args.work) if args.passes else None
    if passes is None and (RESULTS / "ssl_dynamics.json").exists():
        passes = json.loads((RESULTS / "ssl_dynamics.json").read_text()).get("passes")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ssl_dynamics.json").write_text(json.dumps({"grid": grid, "passes": passes}, indent=2))
    md = markdown(grid, passes)
    (RESULTS / "ssl_dynamics.md").write_text(md)
    plot(grid, RESULTS / "ssl_dynamics.png")
    print(md)


if __name__ == "__main__":
    main()
