"""Batched decoding vs parallel contexts for the LLM views (issue 13, item 1): views/s before and after.

One weight read per forward pass can serve several sequences: llama.cpp's own ``llama-server``
(built from the source that llama-cpp-python vendors, see ``--build``) decodes all its parallel
slots in one batch (continuous batching). This script makes the same LLM-rewrite views of the same
WildGuardTrain prompts (cut to the 128-token MiniLM window, as the real run does) with

* ``in-process PxT``: guardmatch's llama-cpp backend, P contexts x T threads (today's layout 2x1);
* ``server npN tT``: ``llama-server -np N -t T --cont-batching`` through guardmatch's
  OpenAI-compatible backend with N requests in flight;

each into a fresh temporary cache, and writes ``benchmarks/results/llama_batching.json``::

    python benchmarks/llama_batching.py --server-bin /path/to/llama-server [--texts 16]

Build the server (about 8 minutes on 2 cores)::

    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 && tar xzf llama_cpp_python-0.3.36.tar.gz
    cd llama_cpp_python-0.3.36/vendor/llama.cpp && cmake -B build -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \\
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF \\
      && cmake --build build -j2 --target llama-server
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from guardmatch.augment.backends.models import resolve_model
from guardmatch.augment.filters import QualityFilter
from guardmatch.augment.inputs import load_inputs
from guardmatch.augment.registry import build_augmenter
from guardmatch.augment.runner import augment
from guardmatch.data.example import Task

RESULTS = Path(__file__).resolve().parent / "results"
WINDOW = {"tokenizer": "minilm", "max_length": 128}


def measure(backend: dict[str, Any], examples: list, label: str) -> dict[str, Any]:
    aug = build_augmenter("llm-rewrite", {"backend": backend, "window": WINDOW})
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        rep = augment(examples, aug, Task.PROMPT, 1, cache_root=tmp, quality_filter=QualityFilter(),
                      max_attempts=1, progress=False)
        wall = time.perf_counter() - t0
    aug.close()
    out = {"layout": label, "texts": len(examples), "attempts": rep.attempts, "accepted": rep.accepted,
           "seconds": round(wall, 1), "generate_s": rep.generate_s,
           "attempts_per_s": round(rep.attempts / wall, 4), "views_per_s": round(rep.accepted / wall, 4)}
    print(json.dumps(out), flush=True)
    return out


def start_server(binary: str, model: str, slots: int, threads: int, port: int) -> subprocess.Popen:
    cmd = [binary, "-m", model, "-np", str(slots), "-c", str(2048 * slots), "-t", str(threads), "-tb", str(threads),
           "--port", str(port), "--host", "127.0.0.1", "--cont-batching", "--no-webui"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"llama-server did not come up: {' '.join(cmd)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server-bin", required=True)
    ap.add_argument("--texts", type=int, default=16)
    ap.add_argument("--slots", default="4,8", help="server parallel slots to try")
    ap.add_argument("--port", type=int, default=8088)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    wgt, _ = load_inputs("wildguardtrain", Task.PROMPT)
    rng = np.random.default_rng(7)
    examples = [wgt[i] for i in rng.choice(len(wgt), args.texts, replace=False)]
    model = resolve_model("qwen1.5b")
    rows = [measure({"kind": "llama-cpp", "model": "qwen1.5b", "threads": 1, "parallel": 2}, examples,
                    "in-process 2 contexts x 1 thread")]
    for slots in (int(s) for s in args.slots.split(",")):
        proc = start_server(args.server_bin, model, slots, os.cpu_count() or 2, args.port)
        try:
            rows.append(measure({"kind": "openai", "model": "qwen", "base_url": f"http://127.0.0.1:{args.port}/v1",
                                 "concurrency": slots, "timeout_s": 900}, examples,
                                f"llama-server {slots} slots x {os.cpu_count()} threads, continuous batching"))
        finally:
            proc.terminate()
            proc.wait(30)
    base = rows[0]["attempts_per_s"]
    for r in rows:
        r["speedup_attempts"] = round(r["attempts_per_s"] / base, 2) if base else None
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"machine": f"{os.cpu_count()} CPU cores, no GPU", "model": Path(model).name, "texts": args.texts,
           "window": WINDOW, "augmenter": "llm-rewrite (prompt task), 1 attempt per text", "rows": rows,
           "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (RESULTS / "llama_batching.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
