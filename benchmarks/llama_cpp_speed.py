"""llama.cpp layouts on this CPU: threads per context x contexts side by side, same rewrites.

    python benchmarks/llama_cpp_speed.py [--model qwen1.5b] [--n 12] [--layouts 1x1,1x2,2x1]

A layout ``PxT`` is P contexts (``backend.parallel``) of T threads each (``backend.threads``). Every
layout rewrites the same seeded sample of real WildGuardTrain prompts with the same per-request seeds
(no cache, no filters), so outputs must match across layouts and only the wall time differs. Run it
on an otherwise idle machine. Writes ``benchmarks/results/llama_cpp_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from guardmatch.augment.backends import BackendConfig
from guardmatch.augment.base import ViewRequest
from guardmatch.augment.inputs import load_inputs, sample_examples
from guardmatch.augment.llm_rewrite import LLMRewriteAugmenter, LLMRewriteConfig
from guardmatch.data.example import Task

RESULTS = Path(__file__).resolve().parent / "results"


def run_layout(model: str, parallel: int, threads: int, requests: list[ViewRequest]) -> dict:
    cfg = LLMRewriteConfig(backend=BackendConfig(kind="llama-cpp", model=model, threads=threads,
                                                 parallel=parallel, n_ctx=4096))
    with LLMRewriteAugmenter(cfg) as aug:
        aug.prepare()
        started = time.perf_counter()
        drafts = []
        size = aug.preferred_batch_size()
        for i in range(0, len(requests), size):  # batches as the runner makes them
            drafts += aug.generate(requests[i:i + size])
        seconds = time.perf_counter() - started
    outputs = [d.prompt or "" for d in drafts]
    return {"layout": f"{parallel}x{threads}", "parallel": parallel, "threads": threads, "texts": len(requests),
            "seconds": round(seconds, 1), "texts_per_s": round(len(requests) / seconds, 4),
            "output_chars": sum(map(len, outputs)), "errors": sum(d.error is not None for d in drafts),
            "outputs": outputs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen1.5b")
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--layouts", default="1x1,1x2,2x1", help="comma-separated PxT: P contexts of T threads")
    args = ap.parse_args()
    examples, _ = load_inputs("wildguardtrain", Task.PROMPT)
    sample = sample_examples(examples, args.n, seed=11, task=Task.PROMPT)
    requests = [ViewRequest(ex, Task.PROMPT, 0, 0, 1234 + i) for i, ex in enumerate(sample)]
    runs = []
    for layout in args.layouts.split(","):
        parallel, threads = (int(x) for x in layout.split("x"))
        run = run_layout(args.model, parallel, threads, requests)
        print(f"{run['layout']:>5}  {run['seconds']:7.1f} s  {run['texts_per_s']:.3f} texts/s  "
              f"{run['output_chars']} chars out", flush=True)
        runs.append(run)
    first_outputs = runs[0]["outputs"]
    for run in runs:
        run["speedup_vs_first"] = round(runs[0]["seconds"] / run["seconds"], 2)
        run["same_outputs_as_first"] = run["outputs"] == first_outputs
    for run in runs:
        del run["outputs"]
    result = {"model": args.model, "cpus": os.cpu_count(), "source_chars": sum(len(ex.prompt) for ex in sample),
              "load_average_at_end": os.getloadavg()[0], "runs": runs}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "llama_cpp_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
