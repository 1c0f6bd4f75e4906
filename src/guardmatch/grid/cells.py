"""Grid cells: the expansion of the axes, each cell's directory, run config and config hash.

A cell is one (task, pool, method or baseline, augmenter, budget, seed). Its directory is derived
from those axes only, so a rerun finds it again::

    <grid out>/<task>/<pool>/<method>-<augmenter>/<budget>/seed<k>     SSL methods
    <grid out>/<task>/in_source/<method>/<budget>/seed<k>              supervised (no augmenter, no pool)
    <baselines dir>/<task>/in_source/<baseline>/<budget>/seed<k>       baselines (shareable between grids)

Supervised methods and baselines use no unlabeled data: they run once per (task, budget, seed),
on the grid's first pool, and tables show them once. SSL methods run for each augmenter whose
views apply to the task, and for each pool listed for the task; an SSL cell whose pool would be
empty (budget ``all`` with no extra unlabeled source) is not generated.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from guardmatch.config import TrainConfig, build_config, deep_merge
from guardmatch.data.example import Example, Task
from guardmatch.errors import ConfigError
from guardmatch.grid.config import Budget, GridConfig

CellKind = Literal["run", "baseline"]

# TrainConfig keys that do not change what a run computes (bookkeeping, locations, threads)
_UNHASHED = {"output_dir", "resume", "threads", "save_every", "keep_checkpoints", "log_every", "feature_cache_dir",
             "eval_every"}
_UNHASHED_DATA = {"data_dir", "allow_hub"}


@dataclass(frozen=True)
class Cell:
    task: Task
    pool: str
    kind: CellKind
    method: str  # method key (kind "run") or baseline key (kind "baseline")
    augmenter: str | None
    budget: Budget
    seed: int

    @property
    def arm(self) -> str:
        """The table row: ``method``, ``method-augmenter`` or the baseline name."""
        return self.method if self.augmenter is None else f"{self.method}-{self.augmenter}"

    @property
    def key(self) -> str:
        return f"{self.task.value}/{self.pool}/{self.arm}/{self.budget}/seed{self.seed}"

    def path(self, grid: GridConfig) -> Path:
        root = grid.baselines_root() if self.kind == "baseline" else Path(grid.output_dir)
        return root / self.task.value / self.pool / self.arm / str(self.budget) / f"seed{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "task": self.task.value, "pool": self.pool, "kind": self.kind, "method": self.method,
                "augmenter": self.augmenter, "budget": str(self.budget), "seed": self.seed}

    def matches(self, filters: dict[str, set[str]]) -> bool:
        """``--only`` filters: every given axis must match one of its values."""
        values = {"task": self.task.value, "pool": self.pool, "kind": self.kind, "method": self.method,
                  "baseline": self.method if self.kind == "baseline" else None,
                  "augmenter": self.augmenter or "none", "budget": str(self.budget), "seed": str(self.seed),
                  "arm": self.arm}
        for axis, wanted in filters.items():
            if axis not in values:
                raise ConfigError(f"--only: unknown axis {axis!r}; known: {', '.join(sorted(values))}")
            if values[axis] not in wanted:
                return False
        return True


def uses_unlabeled(algorithm: str) -> bool:
    from guardmatch.algorithms import get_algorithm

    return bool(get_algorithm(algorithm).uses_unlabeled)


def expand(grid: GridConfig) -> list[Cell]:
    """Every cell of the grid, seed-major (a partial grid already has every row for seed 0)."""
    cells: list[Cell] = []
    for seed in grid.seeds:
        for task, tspec in grid.tasks.items():
            first_pool = tspec.pools[0]
            for budget in grid.task_budgets(task):
                for pool in tspec.pools:
                    pspec = grid.pools[pool]
                    if pspec.budgets is not None and budget not in pspec.budgets:
                        continue
                    for method in grid.task_methods(task):
                        mspec = grid.methods[method]
                        if not uses_unlabeled(mspec.algorithm):
                            if pool == first_pool:
                                cells.append(Cell(task, pool, "run", method, None, budget, seed))
                            continue
                        if pspec.methods is not None and method not in pspec.methods:
                            continue
                        if budget == "all" and not pspec.widens:
                            continue  # no unlabeled data left
                        for aug in grid.task_augmenters(task):
                            if pspec.augmenters is not None and aug not in pspec.augmenters:
                                continue
                            aug_budgets = grid.augmenters[aug].budgets
                            if aug_budgets is not None and budget not in aug_budgets:
                                continue
                            cells.append(Cell(task, pool, "run", method, aug, budget, seed))
                    if pool == first_pool:
                        for name in grid.task_baselines(task):
                            base_budgets = grid.baselines[name].budgets
                            if base_budgets is not None and budget not in base_budgets:
                                continue
                            cells.append(Cell(task, pool, "baseline", name, None, budget, seed))
    return cells


def cell_config(grid: GridConfig, cell: Cell, extra_unlabeled: list[str] | None = None,
                views_cache: str | None = None) -> TrainConfig:
    """The validated run config of a cell (for a baseline: the data part it splits with).

    ``views_cache`` replaces the augmenter's cache (the merged directory when it has extra caches).
    """
    data = grid.run_settings(cell.task, cell.method if cell.kind == "run" else None)
    fixed: dict[str, Any] = {"seed": cell.seed, "output_dir": str(cell.path(grid)), "data": {"labels": cell.budget}}
    if cell.augmenter is not None:
        aug = grid.augmenters[cell.augmenter]
        fixed["views"] = {"cache": views_cache or aug.cache, "cache_dir": aug.cache_dir,
                          "min_coverage": aug.coverage_for(cell.task)}
    if cell.kind == "run":
        pspec = grid.pools[cell.pool]
        if pspec.deployment or not pspec.in_source:
            fixed["data"].update({"deployment_pool": pspec.deployment, "in_source_pool": pspec.in_source})
    data = deep_merge(data, fixed)
    if extra_unlabeled:
        data.setdefault("data", {})
        data["data"]["extra_unlabeled"] = list(data["data"].get("extra_unlabeled", [])) + list(extra_unlabeled)
    return build_config(TrainConfig, data=data, source=f"grid cell {cell.key}")


def config_hash(grid: GridConfig, cell: Cell, config: TrainConfig) -> str:
    """What the cell computes, hashed: a changed grid config never silently reuses an old result.

    Runs hash their whole TrainConfig minus bookkeeping; baselines hash only the data split and
    their own spec, so grids that differ only in training mode share baseline cells.
    """
    dumped = config.model_dump(mode="json")
    if cell.kind == "baseline":
        spec = grid.baseline_spec(cell.task, cell.method)
        payload: dict[str, Any] = {"data": dumped["data"], "seed": dumped["seed"], "kind": spec.kind,
                                   "params": spec.params}
    else:
        payload = {k: v for k, v in dumped.items() if k not in _UNHASHED}
        views = dict(payload.get("views") or {})
        views.pop("cache_dir", None)
        if cell.augmenter is not None:  # the cache by its spec, not by where a merged copy lives
            aug = grid.augmenters[cell.augmenter]
            views["cache"] = [aug.cache, *[Path(p).name for p in aug.extra_caches]]
        payload["views"] = views
    payload["data"] = {k: v for k, v in payload["data"].items() if k not in _UNHASHED_DATA}
    payload["data"]["extra_unlabeled"] = [Path(p).name if os.sep in p else p
                                          for p in payload["data"].get("extra_unlabeled", [])]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- pools


def pool_sources(grid: GridConfig, task: Task, pool: str, *, console=None) -> list[str]:
    """``data.extra_unlabeled`` entries of a pool; ``prompts_from`` is materialized once as a
    normalized JSONL (``<grid out>/pools/<task>-<pool>.jsonl``, labels null) of distinct prompts not
    already in the training source."""
    spec = grid.pools[pool]
    out = list(spec.extra_unlabeled)
    if spec.prompts_from:
        if task is not Task.PROMPT:
            raise ConfigError(f"pools.{pool}.prompts_from only applies to the prompt task, not {task.value}")
        out.append(str(materialize_prompts(grid, task, pool, console=console)))
    return out


def materialize_prompts(grid: GridConfig, task: Task, pool: str, *, console=None) -> Path:
    from guardmatch.config import DataConfig
    from guardmatch.training.run import load_configured_source

    spec = grid.pools[pool]
    merged = deep_merge(grid.base, grid.tasks[task].overrides).get("data", {})
    data_cfg = DataConfig.model_validate({**merged, "task": task.value})
    path = Path(grid.output_dir) / "pools" / f"{task.value}-{pool}.jsonl"
    train = load_configured_source(data_cfg.train, Task.PROMPT, data_cfg).examples
    seen = {ex.content_hash(Task.PROMPT) for ex in train}
    rows: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for source in spec.prompts_from:
        examples = load_configured_source(source, Task.RESPONSE, data_cfg, require_label=False).examples
        kept = 0
        for ex in examples:
            h = Example("x", ex.prompt).content_hash(Task.PROMPT)
            if h in seen:
                continue
            seen.add(h)
            kept += 1
            rows.append({"id": f"{pool}:{source}:{h[:16]}", "prompt": ex.prompt, "response": None, "label": None,
                         "source": f"{source}-prompts"})
        counts[source] = kept
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        if console is not None:
            console.print(f"[dim]pool {pool}: {len(rows)} distinct prompts from "
                          f"{', '.join(f'{k} ({v})' for k, v in counts.items())} -> {path}[/]")
    return path


# ----------------------------------------------------------------------------- views


def merged_views(grid: GridConfig, augmenter: str) -> str:
    """The augmenter's view cache to read: its ``cache``, or (with ``extra_caches``) a directory
    ``<grid out>/views/<augmenter>`` whose ``shards/`` are symlinks to every source cache's shards
    (rebuilt on each call, so shards written since are picked up; nothing is copied)."""
    from guardmatch.augment.cache import MANIFEST, ViewCache
    from guardmatch.storage.files import write_secure_text

    spec = grid.augmenters[augmenter]
    if not spec.extra_caches:
        return spec.cache
    sources = [ViewCache.open(spec.cache, cache_root=spec.cache_dir)]
    sources += [ViewCache.open(extra, cache_root=spec.cache_dir) for extra in spec.extra_caches]
    fingerprints = {c.manifest.get("fingerprint") for c in sources}
    if len(fingerprints) > 1:
        raise ConfigError(f"augmenters.{augmenter}: extra_caches were made with a different augmenter config "
                          f"({', '.join(str(c.path) for c in sources)})")
    dest = Path(grid.output_dir) / "views" / augmenter
    shards = dest / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    # Only add missing links and drop dangling ones: a run reading the directory concurrently
    # (e.g. while `--status` is called) never sees a shard disappear.
    wanted = {f"{i}-{shard.name}": shard.resolve() for i, cache in enumerate(sources) for shard in cache.shard_paths()}
    for link in shards.iterdir():
        if link.is_symlink() and (link.name not in wanted or Path(os.readlink(link)) != wanted[link.name]):
            link.unlink()
    for name, target in wanted.items():
        if not (shards / name).is_symlink():
            tmp = shards / f".{name}.{os.getpid()}.tmp"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(target)
            os.replace(tmp, shards / name)
    manifest = {**sources[0].manifest, "merged_from": [str(c.path) for c in sources]}
    text = json.dumps(manifest, indent=2, ensure_ascii=False)
    if not (dest / MANIFEST).exists() or (dest / MANIFEST).read_text(encoding="utf-8", errors="replace") != text:
        write_secure_text(dest / MANIFEST, text)  # atomic replace
    return str(dest)
