"""Does the schedule by passes converge? (issue 13, item 3)

Reads the per-step logs (``metrics.jsonl``) of finished grid cells, one seed per method, and writes
loss, mask-rate, pseudo-label-accuracy and pseudo-label harmful-share curves (the share drifting from
the labels' prior is confirmation bias; runs logged before that diagnostic existed show "–")
against passes over the pool, plus a table of the last logged window against the one before it (a
converged run barely moves between them):

    python benchmarks/convergence.py --config configs/paper_cpu_frozen.yaml
    python benchmarks/convergence.py --config configs/paper_cpu_frozen_mpnet.yaml --budget 200 --seed 0

Writes ``benchmarks/results/<grid name>/convergence.{md,json,png}`` (200 labels, seed 0; other
``--budget`` / ``--seed`` values write ``convergence_<budget>_seed<k>.*``). Pseudo-label accuracy is measured
against the pool's hidden labels (the grid keeps them for diagnostics only; training never sees them).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CURVES = ("total_loss", "sup_loss", "unsup_loss", "mask_rate", "pseudo_label_acc", "pseudo_harmful_rate")


def read_metrics(path: Path) -> list[dict]:
    """The training records of one run (validation records, which have no loss, are left out)."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line from a kill
        if "total_loss" in rec:
            rows.append(rec)
    return rows


def window_mean(rows: list[dict], key: str, lo: float, hi: float) -> float | None:
    vals = [r[key] for r in rows if lo < r["step"] <= hi and key in r and not math.isnan(r[key])]
    return sum(vals) / len(vals) if vals else None


def summarise(rows: list[dict], steps_per_pass: float) -> dict:
    """Means over the last 20 % of steps and over the 20 % before them."""
    last = rows[-1]["step"]
    cut1, cut2 = 0.8 * last, 0.6 * last
    out: dict = {"steps": last, "passes": round(last / steps_per_pass, 2) if steps_per_pass else None}
    for key in CURVES:
        a, b = window_mean(rows, key, cut2, cut1), window_mean(rows, key, cut1, last)
        out[key] = {"60-80%": a, "80-100%": b, "change": (b - a) if a is not None and b is not None else None}
    return out


def labels_harmful(run_dir: Path) -> float | None:
    """The labeled split's harmful share (from ``split_manifest.json``): what the pseudo-labels'
    harmful share is to be read against."""
    from pydantic import ValidationError

    from guardmatch.data.splits import SplitManifest

    try:
        counts = SplitManifest.model_validate_json((run_dir / "split_manifest.json").read_text()).label_counts["labeled"]
    except (FileNotFoundError, KeyError, ValidationError):
        return None
    total = counts.get("harmful", 0) + counts.get("unharmful", 0)
    return counts.get("harmful", 0) / total if total else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "paper_cpu_frozen.yaml"))
    ap.add_argument("--task", default="prompt")
    ap.add_argument("--pool", default="in_source")
    ap.add_argument("--budget", default="200")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import yaml

    from guardmatch.grid import load_grid_config

    grid = load_grid_config(args.config)
    base = ROOT / grid.output_dir / args.task / args.pool
    runs = {}
    for method_dir in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
        run_dir = method_dir / args.budget / f"seed{args.seed}"
        metrics, run_json = run_dir / "metrics.jsonl", run_dir / "run.json"
        if not (metrics.is_file() and run_json.is_file()):
            continue
        prov = json.loads(run_json.read_text()).get("provenance", {})
        rows = read_metrics(metrics)
        if not rows:
            continue
        optim = yaml.safe_load((run_dir / "config.yaml").read_text()).get("optim", {})
        batch, mu = optim["batch_size"], optim.get("mu", 1)
        unlabeled = prov.get("unlabeled_examples") or 0
        labeled = prov.get("labeled_examples") or 0
        per_pass = unlabeled / (batch * mu) if unlabeled else labeled / batch
        runs[method_dir.name] = {"rows": rows, "per_pass": per_pass, "unit": "pool" if unlabeled else "labels",
                                 "summary": summarise(rows, per_pass), "labels_harmful": labels_harmful(run_dir)}
    if not runs:
        sys.exit(f"no finished cells with metrics.jsonl under {base}/*/{args.budget}/seed{args.seed}")

    out = RESULTS / grid.name
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# {grid.name}: convergence ({args.task}, {args.pool} pool, {args.budget} labels, seed {args.seed})", "",
             "Means of the logged training records over the last 20 % of steps against the 20 % before;",
             "a schedule that converged barely changes between the two windows. Passes: over the unlabeled",
             "pool for SSL methods (steps x batch x mu / pool size), over the labels for supervised.", "",
             "| method | steps | passes | total loss 60-80% → 80-100% | mask rate | pseudo-label acc | "
             "pseudo-labels harmful | labels harmful |", "|---|---:|---:|---|---|---|---|---:|"]

    def fmt(d: dict) -> str:
        a, b = d["60-80%"], d["80-100%"]
        return "–" if a is None or b is None else f"{a:.3f} → {b:.3f} ({b - a:+.3f})"

    for name, r in runs.items():
        s = r["summary"]
        lines.append(f"| {name} | {s['steps']} | {s['passes']} ({r['unit']}) | {fmt(s['total_loss'])} | "
                     f"{fmt(s['mask_rate'])} | {fmt(s['pseudo_label_acc'])} | {fmt(s['pseudo_harmful_rate'])} | "
                     f"{'–' if r['labels_harmful'] is None else format(r['labels_harmful'], '.2f')} |")
    # 200 labels, seed 0 is convergence.*; other cells get their own files beside it
    stem = "convergence" if (args.budget, args.seed) == ("200", 0) else f"convergence_{args.budget}_seed{args.seed}"
    (out / f"{stem}.md").write_text("\n".join(lines) + f"\n\n![curves]({stem}.png)\n")
    (out / f"{stem}.json").write_text(json.dumps(
        {name: {"summary": r["summary"], "steps_per_pass": r["per_pass"], "unit": r["unit"],
                "labels_harmful": r["labels_harmful"], "records": r["rows"]}
         for name, r in runs.items()}, indent=1))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot (pip install guardmatch[plot])", file=sys.stderr)
    else:
        fig, axes = plt.subplots(1, 4, figsize=(20, 4))
        for name, r in runs.items():
            x = [row["step"] / r["per_pass"] for row in r["rows"]]
            for ax, key in zip(axes, ("total_loss", "mask_rate", "pseudo_label_acc", "pseudo_harmful_rate")):
                pts = [(xi, row[key]) for xi, row in zip(x, r["rows"]) if key in row]
                if pts:
                    ax.plot(*zip(*pts), label=name)
        for ax, title in zip(axes, ("total loss", "mask rate", "pseudo-label accuracy (hidden labels)",
                                    "share of used pseudo-labels that say harmful")):
            ax.set_title(title)
            ax.set_xlabel("passes (pool for SSL, labels for supervised)")
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / f"{stem}.png", dpi=90)
    print("\n".join(lines))
    print(f"\nwritten to {out / (stem + '.md')}", file=sys.stderr)


if __name__ == "__main__":
    main()
