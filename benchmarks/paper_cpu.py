"""The paper's grid on CPU (issue 7): run or resume a grid config, then write its results and the
distribution-shift reports under ``benchmarks/results/``.

    # the quick look (frozen encoder; minutes once the texts are encoded)
    nice -n 10 python benchmarks/paper_cpu.py --config configs/paper_cpu_frozen.yaml
    # the benchmark (top-2-layer fine-tuning; hours, resumable: rerun the same command after a kill)
    nohup nice -n 10 python benchmarks/paper_cpu.py --config configs/paper_cpu.yaml > runs/paper_cpu.log 2>&1 &
    # only the shift reports / only the tables from finished cells
    python benchmarks/paper_cpu.py --shift-only
    python benchmarks/paper_cpu.py --config configs/paper_cpu.yaml --report-only

Options are passed through to the grid: ``--only task=prompt --only seed=0`` runs a subset,
``--set base.optim.max_steps=100`` overrides a key. View caches are read from ``--views-dir``
(default ``$GUARDMATCH_CACHE_DIR``, else ``/work/cache/guardmatch`` where it exists).

Writes ``benchmarks/results/<grid name>/`` (``report.md``, ``cells.csv``, ``summary.csv``,
``results.json``, ``plots/``, ``timing.json``) and ``benchmarks/results/shift/{prompt,response}.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def shift_reports(views_pool_file: Path | None, data_dir: str | None) -> None:
    """Seed (200 labels, seed 0) vs pools and test sets, for both tasks (embeddings cached)."""
    from guardmatch.data.example import Task
    from guardmatch.data.splits import make_split
    from guardmatch.data.suites import load_dataset, load_suite
    from guardmatch.evaluation.shift import Embedder, TextSet, shift_report

    out = RESULTS / "shift"
    out.mkdir(parents=True, exist_ok=True)
    cache = ROOT / "runs" / "grid" / "features"  # shared with the frozen grid: the same pooled vectors
    for task, source, extra, max_length in (
        (Task.PROMPT, "wildguardtrain", ["prompt_pool"], 128),
        (Task.RESPONSE, "response_pool", [], 256),
    ):
        t = time.perf_counter()
        examples = load_dataset(source, task, data_dir, allow_hub=False).examples
        split = make_split(examples, 200, seed=0)
        sets = [TextSet(f"{source} rest (in-source pool)", "pool", split.unlabeled)]
        for name in extra:
            sets.append(TextSet(name, "pool", [e.unlabeled() for e in load_dataset(name, task, data_dir, False).examples]))
        if task is Task.PROMPT and views_pool_file is not None and views_pool_file.exists():
            from guardmatch.data.loaders import load_file

            rows = load_file(views_pool_file, task=task, require_label=False).examples
            sets.append(TextSet("response_pool prompts", "pool", rows))
        for name, exs in load_suite(task.value, data_dir, allow_hub=False).items():
            sets.append(TextSet(name, "test", exs))
        embedder = Embedder(task, max_length=max_length, cache_dir=cache, progress=sys.stderr.isatty())
        report = shift_report(TextSet(f"{source} (200 labels, seed 0)", "seed", split.labeled), sets, embedder,
                              max_per_set=1000, permutations=200)
        report.settings["seconds"] = round(time.perf_counter() - t, 1)
        (out / f"{task.value}.md").write_text(f"## {task.value} task\n\n" + report.to_markdown() + "\n")
        (out / f"{task.value}.json").write_text(json.dumps(report.to_dict(), indent=2))
        print(f"shift report ({task.value}) -> {out / (task.value + '.md')}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "paper_cpu_frozen.yaml"))
    ap.add_argument("--only", action="append", default=[], help="AXIS=V1,V2 (see guardmatch grid --help)")
    ap.add_argument("--set", action="append", default=[], dest="sets", help="grid key=value")
    ap.add_argument("--views-dir", default=None, help="view cache root (default: $GUARDMATCH_CACHE_DIR)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--shift", action="store_true", help="also write the distribution-shift reports")
    ap.add_argument("--shift-only", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quiet", action="store_true", help="no per-step progress bars")
    ap.add_argument("--rerun-changed", action="store_true", help="discard and rerun cells whose config changed")
    args = ap.parse_args()

    os.chdir(ROOT)  # the configs' relative paths (runs/grid/...) are relative to the repository
    for k, v in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                 "TOKENIZERS_PARALLELISM": "false"}.items():
        os.environ.setdefault(k, v)
    views = args.views_dir or os.environ.get("GUARDMATCH_CACHE_DIR")
    if not views and Path("/work/cache/guardmatch/views").is_dir():
        views = "/work/cache/guardmatch"
    if views:
        os.environ["GUARDMATCH_CACHE_DIR"] = views
    if args.data_dir:
        os.environ["GUARDMATCH_DATA_DIR"] = args.data_dir

    from guardmatch.cli.common import parse_assignments
    from guardmatch.grid import GridRunner, build_report, load_grid_config, parse_only
    from guardmatch.grid.cells import pool_sources

    grid = load_grid_config(args.config, parse_assignments(args.sets))
    if args.shift or args.shift_only:
        widened = None
        if "widened" in grid.pools and grid.pools["widened"].prompts_from:
            from guardmatch.data.example import Task

            widened = Path(pool_sources(grid, Task.PROMPT, "widened")[-1])
        shift_reports(widened, args.data_dir)
        if args.shift_only:
            return
    t0 = time.perf_counter()
    summary = None
    if not args.report_only:
        runner = GridRunner(grid, only=parse_only(args.only), threads=args.threads, progress=not args.quiet,
                            rerun_changed=args.rerun_changed)
        summary = runner.run()
    out = RESULTS / grid.name
    report = build_report(grid, out)
    if summary is not None:
        timing = {"grid": grid.name, "ran": len(summary.ran), "already_done": len(summary.skipped_done),
                  "skipped_views": summary.skipped_views, "failed": summary.failed,
                  "wall_s": round(time.perf_counter() - t0, 1), "views_dir": views}
        (out / "timing.json").write_text(json.dumps(timing, indent=2))
    print(report["markdown"])
    print(f"\nwritten to {out} ({report['cells_done']}/{report['cells_total']} cells)", file=sys.stderr)


if __name__ == "__main__":
    main()
