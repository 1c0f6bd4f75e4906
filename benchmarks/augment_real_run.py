"""The real augmentation run (issue 4, item 6): views for the real training pools, measured.

One command regenerates everything (resuming from the cache, so a finished stage costs seconds)::

    nohup nice -n 15 python benchmarks/augment_real_run.py --cache-dir /work/cache/guardmatch \
        > /work/cache/guardmatch/real_run.log 2>&1 &

Stages, in order (all with the quality filters on and the embedding-similarity intent check):

a. EDA, 2 views: every prompt of wildguardtrain_sample and prompt_pool, every response_pool pair
   (the prompt_pool and response_pool parts run after d: on a shared 2-core machine the LLM views
   matter more).
b. LLM rewrite (Qwen2.5-Coder-1.5B-Instruct Q4_K_M, llama.cpp), 1 view: a seeded random 1,000
   wildguardtrain_sample prompts (``--sample 1000 --sample-seed 20250101``).
c. LLM backtranslation (same model, pivot de), 1 view: the same 1,000 prompts.
d. LLM rewrite and LLM backtranslation, 1 view: a seeded random 300 response_pool pairs (response task).
e. LLM rewrite over all 3,393 wildguardtrain_sample prompts (the first 1,000 are reused from b).

LLM stages take turns in ``--slice-minutes`` slices (each run resumes its cache), so that every
augmenter/backend is measured early on a slow machine; EDA stages run to the end in their turn.

Results: ``benchmarks/results/augment_real_run.json`` (throughput, rejection counts, cache paths)
and ``benchmarks/results/augment_examples.md`` (5 harmful + 5 benign side-by-side examples per
augmenter). Labels are read only to pick and tag those examples, never by the augmenters.
``--report-only`` rewrites the two files from the caches without generating anything.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from guardmatch.augment.cache import ViewCache
from guardmatch.augment.filters import FilterConfig
from guardmatch.augment.inputs import load_inputs, sample_examples
from guardmatch.augment.pipeline import AugmentSettings, run_augment
from guardmatch.augment.registry import build_augmenter
from guardmatch.augment.filters import QualityFilter
from guardmatch.augment.runner import cache_identity
from guardmatch.data.example import HARMFUL, Task

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLE_SEED = 20250101
THREADS = int(os.environ.get("GUARDMATCH_AUGMENT_THREADS", "1"))
PARALLEL = int(os.environ.get("GUARDMATCH_AUGMENT_PARALLEL", "1"))
# One llama.cpp thread: on a shared, oversubscribed 2-core machine a second thread mostly waits at
# barriers; two contexts of one thread each (GUARDMATCH_AUGMENT_PARALLEL=2) make 1.7x the views of one
# context with two threads on an idle 2-core machine. Neither is part of the cache fingerprint, so both
# can change between resumes.
QWEN = {"backend": {"kind": "llama-cpp", "model": "qwen1.5b", "threads": THREADS, "parallel": PARALLEL, "n_ctx": 4096}}


def stages(cache_dir: str) -> list[tuple[str, AugmentSettings]]:
    common = {"cache_dir": cache_dir, "filters": FilterConfig()}
    llm_bt = {**QWEN, "pivots": ["de"]}
    return [
        ("a-eda-wildguardtrain", AugmentSettings(augmenter="eda", input="wildguardtrain", views=2, **common)),
        ("b-llm-rewrite-wildguardtrain-1000", AugmentSettings(
            augmenter="llm-rewrite", input="wildguardtrain", views=1, sample=1000, sample_seed=SAMPLE_SEED,
            augmenter_config=QWEN, **common)),
        ("c-llm-backtranslation-wildguardtrain-1000", AugmentSettings(
            augmenter="llm-backtranslation", input="wildguardtrain", views=1, sample=1000, sample_seed=SAMPLE_SEED,
            augmenter_config=llm_bt, **common)),
        ("d-llm-rewrite-response_pool-300", AugmentSettings(
            augmenter="llm-rewrite", input="response_pool", task=Task.RESPONSE, views=1, sample=300,
            sample_seed=SAMPLE_SEED, augmenter_config=QWEN, **common)),
        ("d-llm-backtranslation-response_pool-300", AugmentSettings(
            augmenter="llm-backtranslation", input="response_pool", task=Task.RESPONSE, views=1, sample=300,
            sample_seed=SAMPLE_SEED, augmenter_config=llm_bt, **common)),
        ("a-eda-prompt_pool", AugmentSettings(augmenter="eda", input="prompt_pool", views=2, **common)),
        ("a-eda-response_pool", AugmentSettings(augmenter="eda", input="response_pool", task=Task.RESPONSE,
                                                views=2, **common)),
        ("e-llm-rewrite-wildguardtrain-all", AugmentSettings(
            augmenter="llm-rewrite", input="wildguardtrain", views=1, augmenter_config=QWEN, **common)),
    ]


def targets(cache_dir: str) -> list[tuple[str, int, AugmentSettings]]:
    """Issue 4's targets as texts of an input holding an accepted view, each with the stage that tops
    it up: the whole input in file order (texts already tried are skipped), run by ``--top-up`` in
    short slices until the target is met."""
    common = {"cache_dir": cache_dir, "filters": FilterConfig(), "views": 1}
    llm_bt = {**QWEN, "pivots": ["de"]}
    return [
        ("llm-rewrite wildguardtrain", 1000, AugmentSettings(
            augmenter="llm-rewrite", input="wildguardtrain", augmenter_config=QWEN, **common)),
        ("llm-backtranslation wildguardtrain", 1000, AugmentSettings(
            augmenter="llm-backtranslation", input="wildguardtrain", augmenter_config=llm_bt, **common)),
        ("llm-rewrite response_pool", 300, AugmentSettings(
            augmenter="llm-rewrite", input="response_pool", task=Task.RESPONSE, augmenter_config=QWEN, **common)),
        ("llm-backtranslation response_pool", 300, AugmentSettings(
            augmenter="llm-backtranslation", input="response_pool", task=Task.RESPONSE, augmenter_config=llm_bt,
            **common)),
    ]


def texts_with_views(settings: AugmentSettings) -> tuple[int, int]:
    """(distinct texts of the input holding an accepted view, distinct texts tried)."""
    cache = cache_of(settings)
    if cache is None:
        return 0, 0
    examples, _ = load_inputs(settings.input, settings.task)
    keys = {ex.content_hash(settings.task) for ex in examples}
    with_view = tried = 0
    for key in keys:
        tried += bool(cache.records(settings.task, key))
        with_view += cache.has_accepted(settings.task, key)
    return with_view, tried


def target_results(cache_dir: str) -> list[dict[str, Any]]:
    out = []
    for name, target, settings in targets(cache_dir):
        have, tried = texts_with_views(settings)
        out.append({"target": name, "texts_with_views": have, "texts_tried": tried, "required": target,
                    "met": have >= target, "top_up_command": settings.command()})
    return out


def top_up(cache_dir: str, slice_s: float, only: list[str]) -> None:
    for name, target, settings in targets(cache_dir):
        if only and not any(name.startswith(p) for p in only):
            continue
        while (have := texts_with_views(settings)[0]) < target:
            print(f"== top-up {name}: {have} of {target} texts have views (slice {slice_s:.0f} s)",
                  file=sys.stderr, flush=True)
            report = run_augment(settings.model_copy(update={"time_limit_s": slice_s}), progress=True)
            print(json.dumps(report.summary()), file=sys.stderr, flush=True)
            if report.complete:
                break


def cache_of(settings: AugmentSettings) -> ViewCache | None:
    """The existing cache of a stage (same fingerprint the run would use), or None."""
    aug = build_augmenter(settings.augmenter, settings.augmenter_config)
    try:
        desc, fp = cache_identity(aug, QualityFilter(settings.filters))
    finally:
        aug.close()
    path = Path(settings.cache_dir or "") / "views" / ViewCache.dir_name(desc["name"], fp)
    return ViewCache.open(path) if (path / "manifest.json").is_file() else None


def stage_result(name: str, settings: AugmentSettings) -> dict[str, Any]:
    cache = cache_of(settings)
    examples, _ = load_inputs(settings.input, settings.task)
    examples = sample_examples(examples, settings.sample, settings.sample_seed, settings.task)
    out: dict[str, Any] = {"stage": name, "augmenter": settings.augmenter, "task": settings.task.value,
                           "input": settings.input, "texts_requested": len(examples), "views_per_text": settings.views,
                           "command": settings.command()}
    if settings.augmenter_config.get("backend"):
        out["backend"] = settings.augmenter_config["backend"]["kind"]
        out["model"] = settings.augmenter_config["backend"]["model"]
    if cache is None:
        out["status"] = "not started"
        return out
    task = settings.task
    # runs of this augmenter on this task (stages sharing a cache, e.g. b and e, share these numbers)
    runs = [r for r in cache.manifest.get("runs", []) if r.get("task") == task.value]
    totals = throughput(runs)
    # counts over this stage's texts only
    accepted = attempts = slots_done = 0
    rejected: dict[str, int] = {}
    for ex in examples:
        views = cache.records(task, ex.content_hash(task))
        for v in range(settings.views):
            recs = views.get(v, [])
            attempts += len(recs)
            ok = any(r.status == "accepted" for r in recs)
            accepted += ok
            slots_done += ok or len(recs) >= settings.max_attempts
            for r in recs:
                if r.status == "rejected":
                    rejected[r.reason or "unknown"] = rejected.get(r.reason or "unknown", 0) + 1
    total = len(examples) * settings.views
    out.update({
        "status": "complete" if slots_done == total else ("partial" if attempts else "not started"),
        "cache_dir": str(cache.path), "slots_done": slots_done, "slots_total": total,
        "coverage": round(cache.coverage(examples, task), 4), "accepted_views": accepted, "attempts": attempts,
        "rejected": dict(sorted(rejected.items())),
        "rejection_rate": round(1 - accepted / attempts, 4) if attempts else None,
        **{f"throughput_{k}": totals[k] for k in ("runs", "seconds", "attempts", "accepted")},
        "views_per_s": totals["views_per_s"], "attempts_per_s": totals["attempts_per_s"],
        "generate_seconds": round(sum(r["generate_s"] for r in runs), 1),
        "filter_seconds": round(sum(r["filter_s"] for r in runs), 1),
    })
    if settings.augmenter_config.get("backend"):
        out["throughput_by_layout"] = throughput_by_layout(runs)
    return out


# Runs made before runs logged their runtime: processes 17714 and 19212 (2026-11-29, 10:05-10:30 UTC, idle
# machine) used 2 contexts x 1 thread; every earlier run used 1 context x 1 thread.
RUNTIME_BEFORE_LOGGING = {"-17714-": {"parallel": 2, "threads": 1}, "-19212-": {"parallel": 2, "threads": 1}}


def throughput_by_layout(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """views/s per llama.cpp layout (contexts x threads), from the runtime each run logged."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        rt = r.get("runtime") or next((v for k, v in RUNTIME_BEFORE_LOGGING.items() if k in r["run_id"]), None)
        label = (f"{rt.get('parallel', 1)} context(s) x {rt.get('threads')} thread(s)" if rt
                 else "1 context x 1 thread, machine shared with training (runs before layouts were logged)")
        groups.setdefault(label, []).append(r)
    return {label: throughput(rs) for label, rs in groups.items()}


def throughput(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Wall-clock totals of some runs of a cache and their views/s and attempts/s."""
    sec = sum(r["elapsed_s"] for r in runs)
    acc, att = sum(r["accepted"] for r in runs), sum(r["attempts"] for r in runs)
    return {"runs": len(runs), "seconds": round(sec, 1), "attempts": att, "accepted": acc,
            "views_per_s": round(acc / sec, 4) if sec else None,
            "attempts_per_s": round(att / sec, 4) if sec else None}


def examples_markdown(all_stages: list[tuple[str, AugmentSettings]]) -> str:
    lines = ["# Augmentation examples (real run)", "",
             "Accepted views from the caches of `benchmarks/augment_real_run.py`: for each augmenter, the first 5",
             "harmful and 5 benign source texts (input order) that have a view. Labels are shown for reading only;",
             "the augmenters never saw them. Texts are cut at 400 characters.", ""]
    seen: set[tuple[str, str]] = set()
    for name, settings in all_stages:
        key = (settings.augmenter, settings.task.value)
        if key in seen:
            continue
        cache = cache_of(settings)
        if cache is None:
            continue
        seen.add(key)
        examples, _ = load_inputs(settings.input, settings.task)
        examples = sample_examples(examples, settings.sample, settings.sample_seed, settings.task)
        lines += [f"## {settings.augmenter} ({settings.task.value} task, {settings.input})", ""]
        for label, title in ((HARMFUL, "harmful"), (0, "benign")):
            picked = [(ex, v) for ex in examples if ex.label == label
                      for v in cache.accepted(ex, settings.task, max_views=1)][:5]
            lines += [f"### {title}", "", "| source | view | notes |", "|---|---|---|"]
            for ex, view in picked:
                src = ex.prompt if settings.task is Task.PROMPT else ex.response or ""
                dst = view.prompt if settings.task is Task.PROMPT else view.response or ""
                meta = view.metadata
                notes = ", ".join(f"{k}={meta[k]}" for k in ("operation", "pivot", "similarity") if k in meta)
                lines.append(f"| {_cell(src)} | {_cell(dst)} | {notes} |")
            lines.append("")
    return "\n".join(lines) + "\n"


def _cell(text: str, n: int = 400) -> str:
    text = " ".join(text.split())
    text = text if len(text) <= n else text[: n - 1] + "…"
    return text.replace("|", "\\|")


def write_report(all_stages: list[tuple[str, AugmentSettings]], started: float | None = None) -> dict[str, Any]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    results = [stage_result(n, s) for n, s in all_stages]
    report = {
        "machine": f"{os.cpu_count()} CPU cores, no GPU. Runs before 2026-11-29 10:00 UTC: one llama.cpp context "
                   "with 1 thread under nice 15, the cores shared with training jobs (load average 8-12); later "
                   "runs: 2 contexts x 1 thread on an otherwise idle machine (each stage's throughput_by_layout)",
        "sample_seed": SAMPLE_SEED,
        "filters": FilterConfig().model_dump(mode="json"),
        "regenerate": "python benchmarks/augment_real_run.py --cache-dir /work/cache/guardmatch",
        "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "targets": target_results(str(all_stages[0][1].cache_dir)),
        "stages": results,
    }
    (RESULTS / "augment_real_run.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "augment_examples.md").write_text(examples_markdown(all_stages))
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache-dir", default=os.environ.get("GUARDMATCH_CACHE_DIR", "/work/cache/guardmatch"))
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--top-up", nargs="?", const="all", default=None,
                    help="after the stages, feed further texts (file order) until the targets are met "
                         "(optional: comma-separated target-name prefixes, e.g. 'llm-rewrite')")
    ap.add_argument("--stages", default="", help="comma-separated stage-name prefixes to run (default: all)")
    ap.add_argument("--slice-minutes", type=float, default=18.0,
                    help="LLM stages run in turns of this many minutes until all are complete (0: one by one)")
    args = ap.parse_args()
    os.environ["GUARDMATCH_CACHE_DIR"] = args.cache_dir  # model alias qwen1.5b and the purge registry live there
    import torch

    torch.set_num_threads(2)
    all_stages = stages(args.cache_dir)
    if not args.report_only:
        wanted = [p for p in args.stages.split(",") if p]
        pending = [(n, s) for n, s in all_stages if not wanted or any(n.startswith(p) for p in wanted)]
        slice_s = args.slice_minutes * 60 if args.slice_minutes > 0 else None
        while pending:  # LLM stages take turns in time slices, so each gets measured early
            left = []
            for name, settings in pending:
                limit = slice_s if settings.augmenter.startswith("llm") else None
                print(f"== stage {name} (slice {limit or 'none'} s): {settings.command()}", file=sys.stderr, flush=True)
                report = run_augment(settings.model_copy(update={"time_limit_s": limit}), progress=True)
                print(json.dumps(report.summary()), file=sys.stderr, flush=True)
                write_report(all_stages)
                if not report.complete:
                    left.append((name, settings))
            pending = left
        if args.top_up:
            top_up(args.cache_dir, slice_s=120.0, only=[] if args.top_up == "all" else args.top_up.split(","))
    report = write_report(all_stages)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
