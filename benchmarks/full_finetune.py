"""Full fine-tuning vs the CPU fast modes: MiniLM, prompt task, 200 labels, seed 0.

Trains supervised and one SSL method (default MultiMatch, EDA views) with the *whole* encoder
fine-tuned (``mode: full``, B=8, mu=1, 300 steps, max length 128, the USB-style defaults), and puts
the results next to the same cells of the frozen and top-layer grids.

    python benchmarks/full_finetune.py [--algorithm multimatch] [--steps 300]

Writes benchmarks/results/full_finetune.{json,md}. Resumable (each run resumes from its checkpoint).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SETS = ("wildguardtest", "oaimod", "xstest", "aegis")


def grid_f1(grid: str, method: str, seed: int) -> dict | None:
    path = ROOT / "runs" / "grid" / grid / "prompt" / "in_source" / method / "200" / f"seed{seed}" / "run.json"
    if not path.exists():
        return None
    run = json.loads(path.read_text())
    return {"f1": run["f1"], "train_s": run["timings"].get("train_s")}


def main() -> None:
    from guardmatch.config import TrainConfig
    from guardmatch.training.run import run_training

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithm", default="multimatch")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "full_finetune")
    args = parser.parse_args()
    rows = []
    for algorithm in ("supervised", args.algorithm):
        out = args.work / f"{algorithm}-seed{args.seed}"
        cfg = {
            "output_dir": str(out), "seed": args.seed, "algorithm": algorithm, "mode": "full",
            "algorithm_params": {"recalibrate_every": 50} if algorithm == "multimatch" else {},
            "data": {"train": "wildguardtrain", "labels": 200, "suite": "prompt", "allow_hub": False},
            "model": {"encoder": "minilm", "max_length": 128},
            "optim": {"batch_size": 8, "mu": 1, "max_steps": args.steps, "lr": 5e-5, "layer_decay": 0.75},
            "views": {"cache": "eda", "min_coverage": 0.99},
            "save_every": 50, "log_every": 25,
        }
        if not (out / "run.json").exists():
            run_training(TrainConfig.model_validate(cfg))
        run = json.loads((out / "run.json").read_text())
        method = "supervised" if algorithm == "supervised" else f"{algorithm}-eda"
        row = {"method": method, "full": {"f1": run["f1"], "train_s": run["timings"]["train_s"]},
               "top_layers": grid_f1("paper_cpu", method, args.seed),
               "frozen": grid_f1("paper_cpu_frozen", method, args.seed)}
        rows.append(row)
    lines = ["| method | mode | steps x (labeled + unlabeled) batch | train s | " + " | ".join(SETS) + " |",
             "|---|---|---|---:|" + "---:|" * len(SETS)]
    for row in rows:
        ssl = row["method"] != "supervised"
        shape = {"full": f"{args.steps} x (8 + 8)" if ssl else f"{args.steps} x 8",
                 "top_layers": "150 x (16 + 16)" if ssl else "150 x 16", "frozen": "see frozen grid"}
        for mode in ("full", "top_layers", "frozen"):
            r = row[mode]
            if r is None:
                continue
            lines.append(f"| {row['method']} | {mode} | {shape[mode]} | {r['train_s'] or 0:.0f} | "
                         + " | ".join(f"{r['f1'].get(s, float('nan')):.3f}" for s in SETS) + " |")
    md = ("MiniLM, prompt task, 200 labels, seed " + str(args.seed) + "; harmful-class F1 at threshold 0.5.\n\n"
          + "\n".join(lines) + "\n")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "full_finetune.json").write_text(json.dumps(rows, indent=2))
    (RESULTS / "full_finetune.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
