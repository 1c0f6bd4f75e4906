"""Throughput of the LLM-rewrite backends on the same model and texts (views/s, rejections).

    nice -n 15 python benchmarks/augment_backends.py [--model smollm2] [--n 12]

Backends: llama.cpp in process, the OpenAI-compatible client against ``llama_cpp.server`` started
here on loopback (and stopped at the end), and transformers loading the same GGUF (dequantized,
batched). Every run starts from an empty cache in a temp dir, with the default quality filters.
Writes ``benchmarks/results/augment_backends.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from guardmatch.augment import augment
from guardmatch.augment.backends import BackendConfig, resolve_model
from guardmatch.augment.filters import QualityFilter
from guardmatch.augment.inputs import load_inputs, sample_examples
from guardmatch.augment.llm_rewrite import LLMRewriteAugmenter, LLMRewriteConfig
from guardmatch.data.example import Task

RESULTS = Path(__file__).resolve().parent / "results"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_path: str, threads: int, log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", model_path, "--host", "127.0.0.1",
                             "--port", str(port), "--n_ctx", "4096", "--n_threads", str(threads)],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited, see {log}")
        try:
            if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("server did not start")


def run_one(label: str, backend: BackendConfig, examples, max_new_tokens: int, batch_size: int | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        aug = LLMRewriteAugmenter(LLMRewriteConfig(backend=backend, max_new_tokens=max_new_tokens))
        t = time.perf_counter()
        aug.prepare()
        load_s = time.perf_counter() - t
        rep = augment(examples, aug, Task.PROMPT, views=1, cache_root=tmp, quality_filter=QualityFilter(),
                      max_attempts=1, progress=False, batch_size=batch_size)
        aug.close()
    out = {"backend": label, "model": backend.model, "texts": len(examples), "load_s": round(load_s, 1),
           "elapsed_s": rep.elapsed_s, "generate_s": rep.generate_s, "accepted": rep.accepted,
           "rejected": rep.rejected, "views_per_s": round(rep.views_per_s, 4),
           "attempts_per_s": round(rep.attempts_per_s, 4)}
    print(json.dumps(out), file=sys.stderr, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--backends", default="llama-cpp,openai,transformers")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    examples, _ = load_inputs("wildguardtrain", Task.PROMPT)
    examples = sample_examples([ex for ex in examples if len(ex.prompt) <= 400], args.n, seed=7)
    path = resolve_model(args.model)
    results = []
    wanted = args.backends.split(",")
    if "llama-cpp" in wanted:
        results.append(run_one("llama-cpp", BackendConfig(kind="llama-cpp", model=args.model, threads=args.threads),
                               examples, args.max_new_tokens, None))
    if "openai" in wanted:
        with tempfile.TemporaryDirectory() as tmp:
            proc, url = start_server(path, args.threads, Path(tmp) / "server.log")
            try:
                results.append(run_one("openai (llama_cpp.server, loopback)",
                                       BackendConfig(kind="openai", model=args.model, base_url=url, concurrency=2),
                                       examples, args.max_new_tokens, None))
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    if "transformers" in wanted:
        results.append(run_one("transformers (GGUF dequantized, fp32, batch 4)",
                               BackendConfig(kind="transformers", model=args.model, threads=args.threads),
                               examples, args.max_new_tokens, 4))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"machine": f"{os.cpu_count()} shared CPU cores, no GPU", "model": args.model, "model_file": Path(path).name,
           "texts": args.n, "max_new_tokens": args.max_new_tokens, "threads": args.threads, "results": results,
           "command": "nice -n 15 python benchmarks/augment_backends.py " + " ".join(sys.argv[1:])}
    target = RESULTS / f"augment_backends_{args.model}.json"
    target.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
