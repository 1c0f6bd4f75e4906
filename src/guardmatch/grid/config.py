"""The experiment grid's configuration (pydantic, ``extra=forbid``), loadable from YAML.

A grid is a base :class:`~guardmatch.config.TrainConfig` plus axes::

    name: paper_cpu
    output_dir: runs/grid/paper_cpu
    base: {mode: top_layers, model: {encoder: minilm}, optim: {...}}     # any TrainConfig keys
    tasks:                                                                 # task -> overrides
      prompt: {overrides: {data: {train: wildguardtrain, suite: prompt}}, pools: [in_source, widened]}
      response: {overrides: {data: {train: response_pool, suite: response}}}
    methods: {supervised: {algorithm: supervised}, fixmatch: {algorithm: fixmatch, params: {threshold: 0.95}}}
    augmenters: {eda: {cache: eda, cache_dir: /work/cache/guardmatch}}
    pools: {in_source: {}, widened: {extra_unlabeled: [prompt_pool], prompts_from: [response_pool]}}
    budgets: [200, 2000, all]
    seeds: [0, 1, 2]
    baselines: {tfidf-lr: {kind: tfidf_lr}, setfit: {kind: setfit, params: {max_steps: 100}}}

Overrides merge in this order (later wins): ``base`` < task ``overrides`` < method ``overrides``
< what the cell fixes (task, algorithm, params, views, budget, seed, output dir). Loading the grid
validates every (task, method) run config as a ``TrainConfig`` (algorithm names and parameters
included) and every baseline's kind and parameters, before any data is read: a bad key names the
key and the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from guardmatch.config import StrictModel, TrainConfig, build_config, deep_merge, validation_problems
from guardmatch.data.example import Task
from guardmatch.errors import ConfigError, UnknownNameError

Budget = int | Literal["all"]


class MethodSpec(StrictModel):
    """A training algorithm with its parameters (``guardmatch.algorithms``)."""

    algorithm: str
    params: dict[str, Any] = Field(default_factory=dict, description="algorithm_params")
    overrides: dict[str, Any] = Field(default_factory=dict, description="TrainConfig keys for this method only")
    label: str | None = Field(None, description="name in tables and plots (default: the key)")


class AugmenterSpec(StrictModel):
    """A strong-view cache (made by ``guardmatch augment``) used by the SSL methods."""

    cache: str = Field(description="view cache: directory, <name>-<fp12> directory name, or augmenter name")
    cache_dir: str | None = Field(None, description="cache root (else $GUARDMATCH_CACHE_DIR, ~/.cache/guardmatch)")
    min_coverage: float | dict[Task, float] = Field(
        1.0,
        description="share of a cell's pool that must have views (one value, or one per task); below it the cell "
        "is skipped (with the command that fills the cache); between it and 1 the run restricts the pool to "
        "covered texts",
    )
    extra_caches: list[str] = Field(
        default_factory=list,
        description="more caches of the same augmenter (e.g. views of extra pool sources generated elsewhere): "
        "the grid reads them merged with `cache` (read-only symlinks under <grid out>/views/<name>)",
    )
    tasks: list[Task] | None = Field(None, description="tasks this augmenter applies to (default: all)")
    budgets: list[Budget] | None = Field(None, description="budgets run with this augmenter (default: all)")
    label: str | None = None

    @field_validator("min_coverage")
    @classmethod
    def _coverage_in_range(cls, value: float | dict[Task, float]) -> float | dict[Task, float]:
        for v in value.values() if isinstance(value, dict) else [value]:
            if not 0 <= v <= 1:
                raise ValueError(f"min_coverage must lie in [0, 1], got {v}")
        return value

    def coverage_for(self, task: Task | str) -> float:
        """The min_coverage of ``task`` (1.0 for a task a per-task mapping leaves out)."""
        if isinstance(self.min_coverage, dict):
            return float(self.min_coverage.get(Task(task), 1.0))
        return float(self.min_coverage)


class PoolSpec(StrictModel):
    """Where the unlabeled pool comes from, beyond the rest of the training source."""

    extra_unlabeled: list[str] = Field(default_factory=list, description="datasets/files read for the task, labels hidden")
    prompts_from: list[str] = Field(
        default_factory=list,
        description="response-task datasets whose distinct prompts join a prompt-task pool (unlabeled)",
    )
    deployment: bool = Field(False, description=(
        "the deployment halves of the task's data.deployment_sets join the pool (labels hidden)"))
    in_source: bool = Field(True, description="keep the rest of the training source in the pool")
    budgets: list[Budget] | None = Field(None, description="budgets run with this pool (default: the task's)")
    methods: list[str] | None = Field(None, description="SSL methods run with this pool (default: all)")
    augmenters: list[str] | None = Field(None, description="augmenters run with this pool (default: all)")
    label: str | None = None

    @property
    def widens(self) -> bool:
        return bool(self.extra_unlabeled or self.prompts_from or self.deployment)


class BaselineSpec(StrictModel):
    """A non-SSL baseline trained on exactly the cells' labeled split (``guardmatch.grid.baselines``)."""

    kind: str = Field(description="a baseline of guardmatch.grid.baselines.BASELINES: tfidf_lr, setfit")
    params: dict[str, Any] = Field(default_factory=dict)
    budgets: list[Budget] | None = Field(None, description="budgets this baseline runs at (default: all)")
    run: bool = Field(True, description="False: only report cells already computed (e.g. by another grid)")
    label: str | None = None


class TaskSpec(StrictModel):
    """A task's overrides and which axes it runs (``None``: the grid's; an empty list: none, e.g.
    ``budgets: []`` turns off a task inherited through ``extends``, ``augmenters: []`` keeps only its
    supervised runs and baselines)."""

    overrides: dict[str, Any] = Field(default_factory=dict, description="TrainConfig keys for this task")
    budgets: list[Budget] | None = None
    pools: list[str] = Field(default_factory=lambda: ["in_source"])
    methods: list[str] | None = None
    augmenters: list[str] | None = None
    baselines: list[str] | None = None
    baseline_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-baseline parameter overrides for this task (e.g. setfit max_length)")


class GoalSpec(StrictModel):
    """What the report checks SSL against (issue 7): gain on a main test set, no loss elsewhere."""

    task: Task = Task.PROMPT
    budget: Budget = 200
    main_set: str = "wildguardtest"
    min_gain: float = 0.04
    max_loss: float = 0.0
    beat_baseline: str | None = "setfit"


class ReferenceResult(StrictModel):
    """A published number to show beside ours: F1 of ``arm`` at ``budget`` labels on ``test_set``."""

    task: Task
    arm: str = Field(description="the grid arm it corresponds to: a method, method-augmenter or baseline")
    budget: Budget
    test_set: str
    f1: float = Field(ge=0, le=1)
    setting: str = Field("", description="what the reference ran, where it differs from the arm (model, views)")


class ReportSpec(StrictModel):
    pr_budget: Budget = 200
    goals: GoalSpec | None = Field(default_factory=GoalSpec)
    std_ddof: int = Field(1, ge=0, le=1, description="1: sample std over seeds; 0: population std")
    reference_name: str = Field("paper", description="what the reference numbers are (a column header)")
    reference: list[ReferenceResult] = Field(default_factory=list,
                                             description="published numbers to show beside ours, where they exist")
    compare_views: list[tuple[str, str]] = Field(default_factory=list, description=(
        "augmenter pairs (A, B) compared head to head: F1 of method + A minus method + B, paired by seed, "
        "for every method, budget and test set where both arms finished"))
    against_all_labels: list[int] = Field(default_factory=list, description=(
        "budgets whose rows are also compared with supervised training on all labels (F1 minus it, per seed "
        "index, with a 95 % bootstrap interval over test examples and seeds): how close SSL gets to full labels"))


class GridConfig(StrictModel):
    """The whole grid: base run config, axes, baselines, bookkeeping."""

    name: str = "grid"
    description: str = ""
    output_dir: str = "runs/grid"
    baselines_dir: str | None = Field(None, description="where baseline cells live (share it between grids)")
    base: dict[str, Any] = Field(default_factory=dict, description="TrainConfig keys shared by every run")
    tasks: dict[Task, TaskSpec]
    methods: dict[str, MethodSpec]
    augmenters: dict[str, AugmenterSpec] = Field(default_factory=dict)
    pools: dict[str, PoolSpec] = Field(default_factory=lambda: {"in_source": PoolSpec()})
    budgets: list[Budget] = Field(default_factory=lambda: list[Budget]([200]))
    seeds: list[int] = Field(default_factory=lambda: [0])
    baselines: dict[str, BaselineSpec] = Field(default_factory=dict)
    keep_checkpoints: bool = Field(False, description="keep a finished cell's checkpoints/ (large)")
    keep_models: bool = Field(False, description="keep a finished cell's model/ (the scores for the report stay)")
    archive_dir: str | None = Field(
        None, description="keep every finished cell's results here too, one small <grid name>/<key>.tar.gz each "
        "(commit it): a fresh clone restores them instead of rerunning the cells (guardmatch.grid.archive)")
    report: ReportSpec = Field(default_factory=ReportSpec)

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, v: list[Budget]) -> list[Budget]:
        for b in v:
            if isinstance(b, int) and b < 2:
                raise ValueError("budgets must be >= 2 or 'all'")
        return v

    @model_validator(mode="after")
    def _references(self) -> "GridConfig":
        problems = []
        for task, spec in self.tasks.items():
            for pool in spec.pools:
                if pool not in self.pools:
                    problems.append(f"tasks.{task.value}.pools: unknown pool {pool!r} (pools: {sorted(self.pools)})")
            for key, known in (("methods", self.methods), ("augmenters", self.augmenters),
                               ("baselines", self.baselines), ("baseline_params", self.baselines)):
                for name in getattr(spec, key) or []:
                    if name not in known:
                        problems.append(f"tasks.{task.value}.{key}: unknown {key[:-1]} {name!r}")
        for name, pool_spec in self.pools.items():
            for key, known in (("methods", self.methods), ("augmenters", self.augmenters)):
                for ref in getattr(pool_spec, key) or []:
                    if ref not in known:
                        problems.append(f"pools.{name}.{key}: unknown {key[:-1]} {ref!r}")
        for i, pair in enumerate(self.report.compare_views):
            for ref in pair:
                if ref not in self.augmenters:
                    problems.append(f"report.compare_views[{i}]: unknown augmenter {ref!r} "
                                    f"(augmenters: {sorted(self.augmenters)})")
        for budget in self.report.against_all_labels:
            if budget not in self.budgets or "all" not in self.budgets:
                problems.append(f"report.against_all_labels: budget {budget} needs both {budget} and 'all' in "
                                f"budgets (budgets: {self.budgets})")
        if problems:
            raise ValueError("; ".join(problems))
        for name in list(self.methods) + list(self.baselines) + list(self.augmenters) + list(self.pools):
            if not name or "/" in name or name.startswith("."):
                raise ValueError(f"{name!r} cannot be used as a name (it becomes a directory)")
        return self

    @model_validator(mode="after")
    def _runs_validate(self) -> "GridConfig":
        """Every run's config (algorithm and parameters included) and every baseline's kind and
        parameters are checked here, before any data is read or cell run."""
        from guardmatch.grid.baselines import baseline_params  # imports this module

        problems: dict[str, str] = {}  # problem -> the first run it was found in
        for task in self.tasks:
            for method in self.task_methods(task):
                try:
                    TrainConfig.model_validate(self.run_settings(task, method))
                except ValidationError as exc:
                    for problem in validation_problems(exc):
                        problems.setdefault(problem, f"tasks.{task.value} x methods.{method}")
            for name in self.baselines:
                spec = self.baseline_spec(task, name)
                try:
                    baseline_params(spec.kind, spec.params)
                except (ConfigError, UnknownNameError) as exc:
                    task_params = name in self.tasks[task].baseline_params
                    problems.setdefault(str(exc), f"tasks.{task.value}.baseline_params" if task_params
                                        else f"baselines.{name}")
        if problems:
            raise ValueError("\n  - ".join(f"{where}: {problem}" for problem, where in problems.items()))
        return self

    # ------------------------------------------------------------------ derived
    def task_budgets(self, task: Task) -> list[Budget]:
        chosen = self.tasks[task].budgets
        return list(chosen) if chosen is not None else list(self.budgets)

    def task_methods(self, task: Task) -> list[str]:
        chosen = self.tasks[task].methods
        return list(chosen) if chosen is not None else list(self.methods)

    def task_augmenters(self, task: Task) -> list[str]:
        chosen = self.tasks[task].augmenters
        names = list(chosen) if chosen is not None else list(self.augmenters)
        out = []
        for n in names:
            tasks = self.augmenters[n].tasks
            if tasks is None or task in tasks:
                out.append(n)
        return out

    def task_baselines(self, task: Task) -> list[str]:
        chosen = self.tasks[task].baselines
        return list(chosen) if chosen is not None else list(self.baselines)

    def baseline_spec(self, task: Task, name: str) -> BaselineSpec:
        """The baseline's spec with this task's parameter overrides applied."""
        spec = self.baselines[name]
        extra = self.tasks[task].baseline_params.get(name)
        return spec.model_copy(update={"params": {**spec.params, **extra}}) if extra else spec

    def run_settings(self, task: Task, method: str | None) -> dict[str, Any]:
        """The TrainConfig keys of ``method``'s runs on ``task`` before a cell fixes its own (budget,
        seed, views, directory): ``base`` < task ``overrides`` < method ``overrides``, with the
        method's algorithm and params (``method`` None: supervised, the split that baselines use)."""
        data = deep_merge(self.base, self.tasks[task].overrides)
        if method is None:
            fixed: dict[str, Any] = {"algorithm": "supervised", "algorithm_params": {}}
        else:
            spec = self.methods[method]
            data = deep_merge(data, spec.overrides)
            fixed = {"algorithm": spec.algorithm, "algorithm_params": spec.params}
        return deep_merge(data, {**fixed, "data": {"task": task.value}})

    def baselines_root(self) -> Path:
        return Path(self.baselines_dir or self.output_dir)

    def label(self, kind: str, name: str) -> str:
        tables: dict[str, dict[str, Any]] = {"method": self.methods, "augmenter": self.augmenters,
                                             "baseline": self.baselines, "pool": self.pools}
        spec = tables[kind].get(name)
        return (spec.label if spec is not None and spec.label else name)


def load_grid_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                     data: dict[str, Any] | None = None) -> GridConfig:
    """Validate a grid YAML (or ``data``) plus dotted ``overrides`` (``base.mode=frozen``)."""
    return build_config(GridConfig, path, overrides, data=data, source="grid config")
