"""Time per training step, split into model work vs the SSL algorithm's bookkeeping.

For each algorithm (supervised, FixMatch, MarginMatch, MultiMatch) on the packaged MiniLM, real
WildGuardTrain prompts, B=8 and mu in {1, 7}: the trainer's real step is run, and the time spent
inside ``algorithm.step`` (pseudo-labels, masks, APM/SAT/threshold updates, the loss itself) is
measured separately from everything else (tokenization, forward passes, backward, optimizer).
Target: bookkeeping <= 10% of the step.

    python benchmarks/step_overhead.py [--steps 6] [--max-length 128]

Writes benchmarks/results/step_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from guardmatch.algorithms import build_algorithm
from guardmatch.config import TrainConfig
from guardmatch.data.splits import make_split
from guardmatch.data.suites import load_dataset
from guardmatch.model import GuardClassifier
from guardmatch.training.trainer import Trainer

RESULTS = Path(__file__).parent / "results"


def word_drop(example, k=2):
    """A cheap stand-in strong view (the benchmark measures cost, not accuracy)."""
    import random

    rng = random.Random(example.id)
    views = []
    for _ in range(k):
        words = example.prompt.split()
        kept = [w for w in words if rng.random() > 0.15] or words[:1]
        views.append(type(example)(example.id, " ".join(kept), None, None, example.source, {}))
    return views


class Timed:
    """Wraps ``algorithm.step`` and accumulates its wall time."""

    def __init__(self, algorithm):
        self.algorithm = algorithm
        self.seconds = 0.0

    def __getattr__(self, name):
        return getattr(self.algorithm, name)

    def step(self, **kwargs):
        t = time.perf_counter()
        out = self.algorithm.step(**kwargs)
        self.seconds += time.perf_counter() - t
        return out


def measure(algorithm: str, mu: int, steps: int, max_length: int, examples, out_dir: Path) -> dict:
    split = make_split(examples, 200, seed=0)
    pool = split.unlabeled
    views = [word_drop(ex) for ex in pool]
    algo = build_algorithm(algorithm, {"recalibrate_every": 50} if algorithm == "multimatch" else None,
                           num_classes=2, pool_size=len(pool))
    model = GuardClassifier.from_encoder("minilm", num_heads=algo.num_heads, num_outputs=algo.num_outputs(2),
                                         max_length=max_length, seed=0)
    cfg = TrainConfig.model_validate({"output_dir": str(out_dir), "optim": {"batch_size": 8, "mu": mu,
                                                                           "max_steps": steps + 2}})
    timed = Timed(algo)
    trainer = Trainer(cfg, model, timed, split.labeled, pool if algo.uses_unlabeled else (),
                      views if algo.uses_unlabeled else None)
    totals, books = [], []
    for step in range(steps + 2):
        timed.seconds = 0.0
        t = time.perf_counter()
        trainer.train_step(step)
        if step >= 2:  # warm-up steps excluded
            totals.append(time.perf_counter() - t)
            books.append(timed.seconds)
    total = statistics.median(totals)
    book = statistics.median(books)
    return {"algorithm": algorithm, "mu": mu, "B": 8, "pool": len(pool), "steps_timed": steps,
            "step_s": round(total, 4), "model_s": round(total - book, 4), "bookkeeping_s": round(book, 5),
            "bookkeeping_pct": round(100 * book / total, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    examples = load_dataset("wildguardtrain", "prompt").examples
    rows = []
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / "gm_step_overhead"
    for algorithm in ("supervised", "fixmatch", "marginmatch", "multimatch"):
        for mu in (1, 7):
            if algorithm == "supervised" and mu == 7:
                continue  # mu does not apply: no unlabeled batch
            row = measure(algorithm, mu, args.steps, args.max_length, examples, scratch / f"{algorithm}-{mu}")
            print(json.dumps(row), flush=True)
            rows.append(row)
    load = os.getloadavg()
    meta = {"machine": platform.processor() or platform.machine(), "threads": args.threads,
            "max_length": args.max_length, "loadavg_at_end": [round(x, 2) for x in load],
            "encoder": "all-MiniLM-L6-v2 (full fine-tuning)"}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "step_overhead.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = ["| algorithm | mu | step (s) | model fwd/bwd (s) | bookkeeping (s) | bookkeeping % |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['algorithm']} | {r['mu']} | {r['step_s']:.3f} | {r['model_s']:.3f} | "
                     f"{r['bookkeeping_s']:.4f} | {r['bookkeeping_pct']:.2f} |")
    md = "\n".join(lines) + (f"\n\nB=8, max length {args.max_length}, {args.threads} threads, "
                             f"load average at end {meta['loadavg_at_end']}.\n")
    (args.out / "step_overhead.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
