"""Run a grid: every cell once, recorded in the results store; a rerun skips finished cells and a
killed grid resumes (an unfinished training cell continues from its last checkpoint).

Per cell the runner:

1. derives the cell's config and its hash (a finished cell whose hash changed is *stale*: the
   runner stops and says so, unless ``rerun_changed`` discards and reruns it);
2. for SSL cells, checks that the augmenter's view cache covers the cell's pool
   (``AugmenterSpec.min_coverage``); a cell below it is *skipped* with the command that fills the
   cache, and retried by the next grid run;
3. trains with :func:`guardmatch.training.run.run_training` (the same code as ``guardmatch train``),
   or fits a baseline on the same split (:mod:`guardmatch.grid.baselines`);
4. writes ``cell.json`` last (the cell is finished only then), indexes it, and removes the
   checkpoints (and the model, unless ``keep_models``) to keep a 100-cell grid small on disk;
5. with ``archive_dir`` set, also writes the cell's results there as one small archive
   (:mod:`guardmatch.grid.archive`), and planning restores archived cells of the same config hash
   whose directories are missing: a grid commits its finished cells and a fresh clone resumes it.

Cells run in-process, one at a time (the data, split and view caches are memoized across cells).
A ``grid.lock`` (flock) keeps two runners off the same grid directory.
"""

from __future__ import annotations

import fcntl
import gc
import json
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, cast

from rich.console import Console

from guardmatch.config import TrainConfig
from guardmatch.data.example import Task
from guardmatch.errors import ConfigError, GuardmatchError
from guardmatch.grid.archive import archive_path, export_cell, restore_cell
from guardmatch.grid.cells import (
    Cell,
    cell_config,
    config_hash,
    expand,
    merged_views,
    pool_sources,
    uses_unlabeled,
)
from guardmatch.grid.config import GridConfig
from guardmatch.grid.store import ResultsStore, eval_summary, read_cell_file, write_cell_file

STORE_FILE = "results.sqlite"
LOCK_FILE = "grid.lock"


class GridLockedError(GuardmatchError, RuntimeError):
    """Another ``guardmatch grid`` is running on the same output directory."""


class StaleCellsError(ConfigError):
    """Finished cells were computed with a different config than the grid's current one."""


@dataclass
class CellPlan:
    cell: Cell
    path: Path
    config: TrainConfig
    config_hash: str
    state: str  # done | stale | partial | failed | skipped | pending | running
    note: str = ""


@dataclass
class GridSummary:
    ran: list[str] = field(default_factory=list)
    skipped_done: list[str] = field(default_factory=list)
    skipped_views: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"ran": self.ran, "already_done": len(self.skipped_done), "skipped_views": self.skipped_views,
                "failed": self.failed, "elapsed_s": round(self.elapsed_s, 1)}


def parse_only(items: Iterable[str] | None) -> dict[str, set[str]]:
    """``["task=prompt", "method=fixmatch,supervised"]`` -> ``{"task": {...}, "method": {...}}``."""
    out: dict[str, set[str]] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--only expects AXIS=VALUE[,VALUE...], got {item!r}")
        axis, values = item.split("=", 1)
        out.setdefault(axis.strip(), set()).update(v.strip() for v in values.split(",") if v.strip())
    return out


class GridRunner:
    def __init__(self, grid: GridConfig, *, only: dict[str, set[str]] | None = None, console: Console | None = None,
                 rerun_changed: bool = False, fail_fast: bool = False, threads: int | None = None,
                 progress: bool = True):
        self.grid = grid
        self.only = only or {}
        self.console = console or Console(stderr=True)
        self.rerun_changed = rerun_changed
        self.fail_fast = fail_fast
        self.threads = threads
        self.progress = progress
        self.out = Path(grid.output_dir)
        self._pools: dict[tuple[Task, str], list[str]] = {}
        self._prepared: dict[str, Any] = {}
        self._views: dict[tuple[str, str | None], Any] = {}
        self._merged: dict[str, str] = {}

    # ------------------------------------------------------------------ planning
    def cells(self) -> list[Cell]:
        return [c for c in expand(self.grid) if c.matches(self.only)]

    def _extra(self, cell: Cell) -> list[str]:
        key = (cell.task, cell.pool)
        if key not in self._pools:
            self._pools[key] = pool_sources(self.grid, cell.task, cell.pool, console=self.console)
        return self._pools[key]

    def _views_cache(self, cell: Cell) -> str | None:
        if cell.augmenter is None:
            return None
        if cell.augmenter not in self._merged:
            try:
                self._merged[cell.augmenter] = merged_views(self.grid, cell.augmenter)
            except FileNotFoundError:  # a cache not made yet: the coverage check skips the cell
                self._merged[cell.augmenter] = self.grid.augmenters[cell.augmenter].cache
        return self._merged[cell.augmenter]

    def plan(self) -> list[CellPlan]:
        """Every selected cell with its config, hash and current state (reads directories only)."""
        plans = []
        for cell in self.cells():
            path = cell.path(self.grid)
            config = cell_config(self.grid, cell, self._extra(cell), self._views_cache(cell))
            digest = config_hash(self.grid, cell, config)
            record = read_cell_file(path)
            if self.grid.archive_dir and (record is None or record.get("status") != "done") \
                    and restore_cell(archive_path(self.grid.archive_dir, self.grid.name, cell.key), path, digest):
                record = read_cell_file(path)  # finished elsewhere: its archived results, same config
            if record is not None and record.get("status") == "done":
                state = "done" if record.get("config_hash") == digest else "stale"
            elif (path / "checkpoints").is_dir() and any((path / "checkpoints").iterdir()):
                state = "partial"
            else:
                state = "pending"
            plans.append(CellPlan(cell, path, config, digest, state))
        return plans

    def open_store(self) -> ResultsStore:
        return ResultsStore(self.out / STORE_FILE)

    def status(self) -> list[CellPlan]:
        """Plans with states from the store too (failed / skipped cells)."""
        plans = self.plan()
        with self.open_store() as store:
            for p in plans:
                row = store.get(p.cell.key)
                if p.state in ("pending", "partial") and row and row["status"] in ("failed", "skipped", "running"):
                    p.note = row.get("error") or ""
                    if row["status"] != "running":
                        p.state = row["status"]
        return plans

    def estimate(self, plans: list[CellPlan]) -> dict[str, Any]:
        """Remaining wall time, from the finished cells' recorded times.

        Each unfinished cell takes the mean time of finished cells of its kind (task, run/baseline,
        method, budget), else of its method, else of cells as (un)supervised as it is (same task,
        then any), else of its (task, kind), else of all finished cells; ``unlike_cells`` counts the
        last two cases (an SSL cell timed from supervised ones, whose steps cost 2-3x less, makes the
        estimate a lower bound).
        """
        import statistics

        def keys(c: Cell) -> tuple[tuple, ...]:
            ssl = c.kind == "run" and uses_unlabeled(self.grid.methods[c.method].algorithm)
            return ((c.task, c.kind, c.method, str(c.budget)), (c.task, c.kind, c.method), (c.task, c.kind, ssl),
                    (c.kind, ssl), (c.task, c.kind), ())

        done: dict[tuple, list[float]] = {}
        for p in plans:
            record = read_cell_file(p.path) if p.state == "done" else None
            if record and record.get("elapsed_s"):
                for key in keys(p.cell):
                    done.setdefault(key, []).append(float(record["elapsed_s"]))
        if not done:
            return {"finished_cells": 0, "remaining_s": None}
        remaining, unlike = 0.0, 0
        todo = [p for p in plans if p.state not in ("done", "skipped") and self._should_run(p)]
        for p in todo:
            for i, key in enumerate(keys(p.cell)):
                if key in done:
                    remaining += statistics.fmean(done[key])
                    unlike += i >= 4
                    break
        return {"finished_cells": len(done[()]), "remaining_cells": len(todo), "remaining_s": remaining,
                "unlike_cells": unlike, "finished_s": sum(done[()]),
                "waiting_for_views": sum(p.state == "skipped" for p in plans)}

    # ------------------------------------------------------------------ running
    def run(self) -> GridSummary:
        self.out.mkdir(parents=True, exist_ok=True)
        lock = open(self.out / LOCK_FILE, "a")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise GridLockedError(f"{self.out} is being run by another `guardmatch grid` process") from None
        try:
            return self._run()
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
            lock.close()

    def _run(self) -> GridSummary:
        t0 = time.perf_counter()
        self._save_grid_config()
        plans = self.plan()
        stale = [p for p in plans if p.state == "stale" and self._should_run(p)]
        if stale and not self.rerun_changed:
            shown = "\n  ".join(p.cell.key for p in stale[:20])
            raise StaleCellsError(
                f"{len(stale)} finished cell(s) were computed with a different config than {self.grid.name!r} now "
                f"describes:\n  {shown}{' ...' if len(stale) > 20 else ''}\n"
                "Restore the config, use a new output_dir, or pass --rerun-changed to discard and rerun them.")
        summary = GridSummary()
        with self.open_store() as store:
            store.sync([p.cell.to_dict() for p in plans if p.state == "done"], {p.cell.key: p.path for p in plans})
            for p in plans:  # cells finished before archive_dir was set, or by an older run
                if p.state == "done":
                    self._archive(p)
            todo = [p for p in plans if p.state != "done" and self._should_run(p)]
            summary.skipped_done = [p.cell.key for p in plans if p.state == "done"]
            self.console.print(f"[bold]grid {self.grid.name}[/]: {len(plans)} cells, {len(summary.skipped_done)} done, "
                               f"{len(todo)} to run -> {self.out}")
            for i, plan in enumerate(todo, 1):
                cell = plan.cell
                if not self._should_run(plan):
                    continue
                if plan.state == "stale":
                    shutil.rmtree(plan.path, ignore_errors=True)
                label = f"[{i}/{len(todo)}] {cell.key}"
                self.console.rule(f"[bold]{label}[/] ({'resuming' if plan.state == 'partial' else 'start'})")
                store.mark_running(cell.to_dict(), plan.config_hash, plan.path)
                try:
                    record = self._run_cell(plan)
                except _SkipCell as skip:
                    store.mark_failed(cell.to_dict(), str(skip), status="skipped", config_hash=plan.config_hash,
                                      path=str(plan.path))
                    summary.skipped_views[cell.key] = str(skip)
                    self.console.print(f"[yellow]skipped:[/] {skip}")
                    continue
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # noqa: BLE001 - one failed cell must not stop the grid
                    message = f"{type(exc).__name__}: {exc}"
                    store.mark_failed(cell.to_dict(), message, config_hash=plan.config_hash, path=str(plan.path))
                    (plan.path / "error.txt").parent.mkdir(parents=True, exist_ok=True)
                    (plan.path / "error.txt").write_text(traceback.format_exc())
                    summary.failed[cell.key] = message
                    self.console.print(f"[bold red]failed:[/] {cell.key}: {message}")
                    if self.fail_fast:
                        raise
                    continue
                finally:
                    gc.collect()
                store.mark_done(cell.to_dict(), record)
                self._archive(plan)
                summary.ran.append(cell.key)
                f1 = ", ".join(f"{k} {v['f1']:.3f}" for k, v in record["metrics"].items())
                self.console.print(f"[green]done[/] {cell.key} in {record['elapsed_s']:.0f}s: F1 {f1}")
        summary.elapsed_s = time.perf_counter() - t0
        return summary

    def _archive(self, plan: CellPlan) -> None:
        if self.grid.archive_dir:
            export_cell(plan.path, archive_path(self.grid.archive_dir, self.grid.name, plan.cell.key))

    def _should_run(self, plan: CellPlan) -> bool:
        if plan.cell.kind == "baseline" and not self.grid.baselines[plan.cell.method].run:
            return False  # report-only baseline (computed by another grid sharing baselines_dir)
        return True

    def _save_grid_config(self) -> None:
        import yaml

        (self.out / "grid.yaml").write_text(yaml.safe_dump(self.grid.model_dump(mode="json"), sort_keys=False))

    # ------------------------------------------------------------------ one cell
    def _prepared_for(self, config: TrainConfig):
        """``prepare_data`` memoized on the data part + seed (same split for every method)."""
        from guardmatch.training.run import prepare_data

        key = json.dumps({"data": config.data.model_dump(mode="json"), "seed": config.seed}, sort_keys=True)
        if key not in self._prepared:
            if len(self._prepared) > 8:
                self._prepared.pop(next(iter(self._prepared)))
            self._prepared[key] = prepare_data(config, Console(quiet=True))
        return self._prepared[key]

    def _view_cache(self, cache: str, cache_dir: str | None):
        from guardmatch.augment.cache import ViewCache

        key = (cache, cache_dir)
        if key not in self._views:
            self._views[key] = ViewCache.open(cache, cache_root=cache_dir)
        return self._views[key]

    def _check_views(self, plan: CellPlan) -> dict[str, Any]:
        cell, config = plan.cell, plan.config
        # SSL cells always have an augmenter, and cell_config sets its view cache
        aug = self.grid.augmenters[cast(str, cell.augmenter)]
        try:
            cache = self._view_cache(cast(str, config.views.cache), aug.cache_dir)
        except FileNotFoundError as exc:
            raise _SkipCell(f"augmenter {cell.augmenter!r}: {exc}") from None
        pool = self._prepared_for(config).pool
        covered = cache.coverage(pool, cell.task) if pool else 0.0
        info = {"view_cache": str(cache.path), "view_coverage": round(covered, 4), "pool_size": len(pool)}
        need = config.views.min_coverage  # cell_config resolved the augmenter's per-task value
        if covered < need:
            commands = "\n  ".join(fill_commands(cache, config))
            raise _SkipCell(
                f"views of {cell.augmenter!r} cover {covered:.1%} of this cell's pool of {len(pool)} "
                f"(min_coverage {need:.0%}); fill the cache with:\n  {commands}")
        return info

    def _run_cell(self, plan: CellPlan) -> dict[str, Any]:
        import torch

        cell, config = plan.cell, plan.config
        if self.threads:  # the command line's --threads wins over the config's (not part of a cell's hash)
            config = config.model_copy(update={"threads": self.threads})
            torch.set_num_threads(self.threads)
        started = time.time()
        t0, c0 = time.perf_counter(), time.process_time()
        info: dict[str, Any] = {}
        if cell.kind == "baseline":
            from guardmatch.grid.baselines import run_baseline

            prepared = self._prepared_for(config)
            out = run_baseline(self.grid.baseline_spec(cell.task, cell.method), cell.method, config, prepared, plan.path,
                               keep_model=self.grid.keep_models, progress=self.progress)
            info.update({"labeled": out["provenance"]["labeled_examples"], "fit": out["provenance"]["fit"]})
            timings = out["timings"]
        else:
            from guardmatch.training.run import run_training

            if uses_unlabeled(config.algorithm):
                info.update(self._check_views(plan))
            result = run_training(config, console=self.console if self.progress else Console(quiet=True))
            run = json.loads((plan.path / "run.json").read_text())
            prov = run.get("provenance", {})
            info.update({"labeled": prov.get("labeled_examples"), "unlabeled": prov.get("unlabeled_examples"),
                         "steps": prov.get("max_steps"), "mode": prov.get("mode"),
                         "resumed_from": result.train.resumed_from, "notes": run.get("notes", [])})
            if "view_coverage" in info and info["view_coverage"] < 1.0:
                restricted = any("restricted to the covered" in n for n in run.get("notes", []))
                missing = round((1 - info["view_coverage"]) * info["pool_size"])
                info["pool_restricted_to_views"] = restricted
                if not restricted:
                    info["identity_views"] = missing  # pool texts trained with their own text as the strong view
            timings = dict(result.timings)
            history = [h for h in result.train.history if "mask_rate" in h]
            if history:
                info["final_mask_rate"] = history[-1].get("mask_rate")
                info["final_pseudo_label_acc"] = history[-1].get("pseudo_label_acc")
            del result
        record = {
            **plan.cell.to_dict(),
            "status": "done",
            "config_hash": plan.config_hash,
            "path": str(plan.path),
            "started": started,
            "finished": time.time(),
            "elapsed_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - c0,
            "metrics": eval_summary(plan.path),
            "timings": timings,
            "info": info,
        }
        write_cell_file(plan.path, record)
        if not self.grid.keep_checkpoints:
            shutil.rmtree(plan.path / "checkpoints", ignore_errors=True)
        if not self.grid.keep_models:
            shutil.rmtree(plan.path / "model", ignore_errors=True)
            shutil.rmtree(plan.path / "best", ignore_errors=True)
        return record


def fill_commands(cache, config: TrainConfig) -> list[str]:
    """``guardmatch augment`` commands that generate the missing views of a cell's pool: the
    cache's own command (same augmenter settings) with this cell's task and each pool source."""
    import re

    base = cache.manifest.get("command") or cache.fill_command(config.data.task)
    base = re.sub(r" --sample \S+| --sample-seed \S+", "", base)
    merged = cache.manifest.get("merged_from")
    if merged:  # a merged view directory: write into the primary cache's root
        base = re.sub(r" --cache-dir \S+", "", base) + f" --cache-dir {Path(merged[0]).parent.parent}"
    if " --task " in base:
        base = re.sub(r" --task \S+", f" --task {config.data.task.value}", base)
    else:
        base += f" --task {config.data.task.value}"
    out = []
    for source in [config.data.train, *config.data.extra_unlabeled]:
        if " --input " in base or " -i " in base:
            out.append(re.sub(r" (--input|-i) \S+", f" --input {source}", base, count=1))
        else:
            out.append(f"{base} --input {source}")
    return out


class _SkipCell(Exception):
    """A cell that cannot run yet (its views are missing); retried by the next grid run."""
