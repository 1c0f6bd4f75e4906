"""Seconds per top-layer training step, before and after (issue 13, item 4), per method.

Settings, each on the same data (200 stratified WildGuardTrain labels, an unlabeled pool of the
texts holding EDA views from ``views/``, capped), packaged MiniLM (``--encoder mpnet``:
all-mpnet-base-v2), max length 128, B=16, mu=1:

* ``top-2, shuffled``: today's grid cells (top 2 layers fine-tuned, random batches, dynamic padding);
* ``top-2, length buckets``: batches drawn from windows of 16 batches sorted by length
  (``optim.length_buckets=16``), so a batch pads to a similar length;
* ``top-1, length buckets``: only the top layer fine-tuned;
* ``..., bf16``: mixed precision (``precision: bf16``: autocast, fp32 master weights; this CPU has
  AVX512-BF16).

``--quality``: supervised, 200 labels, 10 epochs, seed 0 per setting, evaluated on the prompt suite,
so time and F1 sit side by side (a single seed: differences under ~0.02 F1 are noise).

Also the padding efficiency of each sampler (real tokens / padded tokens over the first 200 steps),
a deterministic figure independent of machine load. Timings: median CPU seconds of a step (process
time) after 3 warm-up steps with 1 torch thread: on shared cores wall time measures the neighbours,
CPU time measures the work (with free cores and 1 thread the two agree).

    nice -n 0 python benchmarks/top_layer_step.py [--steps 20] [--threads 1]
    python benchmarks/top_layer_step.py --encoder mpnet --setting "top-2, length buckets, bf16"

Writes ``benchmarks/results/top_layer_step.{json,md}`` (``top_layer_step_<encoder>.*`` for another
encoder or a ``--setting`` subset).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from guardmatch.config import TrainConfig
from guardmatch.training import run as run_mod
from guardmatch.training.loaders import StepSampler

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("supervised", "fixmatch", "marginmatch", "multimatch")
SETTINGS = {"top-2, shuffled": (2, 0, "fp32"), "top-2, length buckets": (2, 16, "fp32"),
            "top-1, length buckets": (1, 16, "fp32"), "top-2, length buckets, bf16": (2, 16, "bf16"),
            "top-1, length buckets, bf16": (1, 16, "bf16")}


def config(method: str, top: int, bucket: int, steps: int, work: Path, pool_cap: int,
           precision: str = "fp32", encoder: str = "minilm") -> TrainConfig:
    return TrainConfig.model_validate({
        "output_dir": str(work / f"{method}-{top}-{bucket}-{precision}"), "algorithm": method, "mode": "top_layers",
        "top_layers": top, "feature_cache_dir": str(work / "features"), "seed": 0, "resume": False,
        "precision": precision,
        "algorithm_params": {"recalibrate_every": 25} if method == "multimatch" else {},
        "data": {"train": "wildguardtrain", "labels": 200, "suite": "none", "allow_hub": False,
                 "unlabeled_limit": pool_cap},
        "model": {"encoder": encoder, "max_length": 128},
        "optim": {"batch_size": 16, "mu": 1, "max_steps": steps, "length_buckets": bucket, "lr": 2e-4},
        "views": {"cache": "eda", "min_coverage": 0.0}, "save_every": 10_000, "log_every": 10_000,
    })


class StepTimer:
    """Wraps Trainer.train_step and records the CPU time of each call (1 torch thread: the work)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._orig = run_mod.Trainer.train_step
        timer = self

        def timed(trainer, step):  # noqa: ANN001
            t = time.process_time()  # CPU seconds of this process: robust to other jobs on the cores
            out = timer._orig(trainer, step)
            timer.times.append(time.process_time() - t)
            return out

        run_mod.Trainer.train_step = timed

    def close(self) -> None:
        run_mod.Trainer.train_step = self._orig


def padding_efficiency(tokenizer, texts: list[str], batch: int, bucket: int, steps: int = 200) -> float:
    lengths = [min(128, len(ids)) for ids in tokenizer(texts, truncation=True, max_length=128)["input_ids"]]
    sampler = StepSampler(len(texts), batch, 0, lengths=tuple(lengths) if bucket else None, bucket=bucket)
    real = padded = 0
    for s in range(steps):
        lens = [lengths[i] for i in sampler.indices(s)]
        real += sum(lens)
        padded += max(lens) * len(lens)
    return real / padded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pool-cap", type=int, default=600)
    ap.add_argument("--quality", action="store_true", help="also train supervised 200-label models per setting")
    ap.add_argument("--encoder", default="minilm", choices=["minilm", "mpnet"],
                    help="mpnet: all-mpnet-base-v2 from scripts/get_mpnet.sh")
    ap.add_argument("--setting", action="append", choices=list(SETTINGS),
                    help="a setting to time (repeatable; default: all)")
    args = ap.parse_args()
    settings = {name: SETTINGS[name] for name in (args.setting or SETTINGS)}
    # the full MiniLM table is top_layer_step.*; a subset or another encoder never overwrites it
    stem = "top_layer_step" if args.encoder == "minilm" and not args.setting else f"top_layer_step_{args.encoder}"
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for label, (top, bucket, precision) in settings.items():
            for method in METHODS:
                timer = StepTimer()
                try:
                    t = time.perf_counter()
                    result = run_mod.run_training(config(method, top, bucket, args.steps + 3, work, args.pool_cap,
                                                         precision, args.encoder), evaluate=False)
                    wall = time.perf_counter() - t
                finally:
                    timer.close()
                row = {"setting": label, "method": method, "top_layers": top, "length_buckets": bucket,
                       "precision": precision, "ran_in": run_mod.precision_in_effect(precision),
                       "step_s": round(statistics.median(timer.times[3:]), 4), "steps_timed": len(timer.times) - 3,
                       "features_s": round(result.timings.get("features_s", 0.0), 1), "run_s": round(wall, 1)}
                print(json.dumps(row), flush=True)
                rows.append(row)
        quality = []
        for label, (top, bucket, precision) in settings.items() if args.quality else ():
            cfg = config("supervised", top, bucket, 1, work, args.pool_cap, precision, args.encoder)
            cfg = cfg.model_copy(update={
                "output_dir": cfg.output_dir + "-quality",
                "data": cfg.data.model_copy(update={"suite": "prompt"}),
                "optim": cfg.optim.model_copy(update={"epochs": 10, "head_lr": 1e-3, "layer_decay": 0.9})})
            res = run_mod.run_training(cfg, evaluate=True)
            quality.append({"setting": label, "steps": res.config.optim.max_steps,
                            "train_s": round(res.timings["train_s"], 1), "f1": res.evaluation.f1()})
            print(json.dumps(quality[-1]), flush=True)
    from transformers import AutoTokenizer

    from guardmatch.data.suites import load_dataset
    from guardmatch.encoders import resolve_encoder

    tok = AutoTokenizer.from_pretrained(resolve_encoder(args.encoder))
    texts = [ex.prompt for ex in load_dataset("wildguardtrain", "prompt").examples]
    padding = {f"bucket={b}": round(padding_efficiency(tok, texts, 16, b), 4) for b in (0, 16)}
    base = {r["method"]: r["step_s"] for r in rows if r["setting"] == "top-2, shuffled"}
    for r in rows:
        r["speedup"] = round(base[r["method"]] / r["step_s"], 2) if r["step_s"] and r["method"] in base else None
    meta = {"machine": f"{os.cpu_count()} CPU cores", "encoder": args.encoder, "threads": args.threads,
            "batch": 16, "mu": 1,
            "max_length": 128, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
            "padding_efficiency_wildguardtrain": padding,
            "note": "CPU seconds per step (process time, 1 torch thread); the cores were shared with other jobs"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows, "quality": quality},
                                                            indent=2) + "\n")
    lines = ["| setting | " + " | ".join(METHODS) + " |", "|---|" + "---:|" * len(METHODS)]
    for label in settings:
        cells = {r["method"]: r for r in rows if r["setting"] == label}
        lines.append(f"| {label} | " + " | ".join(
            f"{cells[m]['step_s']:.3f} s" + (f" ({cells[m]['speedup']:.2f}x)" if cells[m]["speedup"] else "")
            for m in METHODS) + " |")
    md = (f"# Top-layer step cost, {args.encoder} (CPU s per step, {args.threads} thread(s), median; speedup vs "
          "top-2 shuffled where measured)\n\n" + "\n".join(lines)
          + f"\n\nPadding efficiency (real / padded tokens, WildGuardTrain prompts, B=16): {padding}.\n"
          + f"{args.threads} torch thread(s), load average at the end {meta['loadavg_at_end']} "
          "(the view generation ran beside it).\n")
    if quality:
        sets = list(quality[0]["f1"])
        md += ("\nQuality, supervised, 200 labels, 10 epochs, seed 0 (harmful-class F1 at 0.5):\n\n"
               "| setting | steps | train s | " + " | ".join(sets) + " |\n|---|---:|---:|" + "---:|" * len(sets) + "\n")
        for q in quality:
            md += f"| {q['setting']} | {q['steps']} | {q['train_s']} | " + " | ".join(
                f"{q['f1'][k]:.3f}" for k in sets) + " |\n"
    (RESULTS / f"{stem}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
