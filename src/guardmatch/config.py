"""Typed, validated run configuration (pydantic), loadable from YAML, with flag overrides.

Also the config machinery every other config uses (grid, augment, ingest): the strict base
:class:`StrictModel`, the dotted-override helper :func:`set_dotted`, :func:`deep_merge` and
:func:`build_config` (YAML + overrides -> a validated model, or a :class:`~guardmatch.errors.ConfigError`
naming the key). A YAML file may start from another with ``extends: other.yaml`` (a path relative to
the file): its own keys are deep-merged over the other's, so a variant states only what differs.

Defaults reproduce USB's NLP settings (docs/ALGORITHMS.md) where they apply; ``configs/*.yaml`` hold
named setups (quickstart, paper, paper_cpu).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from guardmatch.data.example import Task
from guardmatch.errors import ConfigError

if TYPE_CHECKING:
    from guardmatch.algorithms.base import AlgorithmConfig


class StrictModel(BaseModel):
    """Base of every guardmatch config: an unknown key (a typo) is an error, never silently ignored;
    assignments are validated too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(StrictModel):
    """Where labels and unlabeled text come from, and how the labeled budget is drawn."""

    task: Task = Task.PROMPT
    train: str = Field("wildguardtrain", description="dataset name (see `guardmatch data list`) or a file path")
    train_format: str | None = Field(None, description="file format when `train` is a path (auto-detected)")
    data_dir: str | None = Field(None, description="local data root (else $GUARDMATCH_DATA_DIR, ../shared/data)")
    allow_hub: bool = True
    source_subset: int | None = Field(None, ge=2, description=(
        "use a fixed label-stratified subset of this many distinct texts of `train` as the source "
        "(the same for every run seed; e.g. the response pairs the shipped views cover)"))
    source_subset_seed: int = 20251202
    labels: int | Literal["all"] = Field(200, description="labeled budget drawn from `train`; the rest is unlabeled")
    strategy: Literal["stratified", "balanced"] = "stratified"
    validation: int = Field(0, ge=0, description="validation examples, counted against the budget")
    extra_unlabeled: list[str] = Field(default_factory=list, description="more unlabeled sources (labels hidden)")
    unlabeled_limit: int | None = Field(None, ge=1, description="cap on the unlabeled pool (seeded sample)")
    suite: str | None = Field("auto", description="test suite evaluated after training: prompt, response, none")
    deployment_sets: list[str] = Field(default_factory=list, description=(
        "suite test sets split by the deployment protocol (guardmatch.data.deployment): each is evaluated "
        "on its evaluation half only (reported as '<name>@eval')"))
    deployment_pool: bool = Field(False, description=(
        "add the deployment halves of `deployment_sets` (labels hidden) to the unlabeled pool"))
    in_source_pool: bool = Field(True, description="keep the rest of `train` in the unlabeled pool (False: "
                                                   "the pool is only `extra_unlabeled` and deployment halves)")
    deployment_seed: int = 20251203
    on_overlap: Literal["error", "drop"] = Field(
        "drop", description="train rows whose text is also in a test set: drop them (reported) or stop"
    )

    @field_validator("labels")
    @classmethod
    def _positive(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 2:
            raise ValueError("the labeled budget must be at least 2 (or 'all')")
        return v

    @model_validator(mode="after")
    def _deployment(self) -> "DataConfig":
        if self.deployment_pool and not self.deployment_sets:
            raise ValueError("deployment_pool needs deployment_sets (the test sets whose halves form the pool)")
        if self.deployment_sets and self.suite_name() is None:
            raise ValueError("deployment_sets split the suite's test sets: set a suite")
        if self.deployment_sets:
            from guardmatch.data.deployment import DEPLOYMENT_SETS

            allowed = DEPLOYMENT_SETS[self.task]
            bad = [n for n in self.deployment_sets if n not in allowed]
            if bad:
                raise ValueError(f"deployment_sets {bad}: the {self.task.value} task's external sets are "
                                 f"{', '.join(allowed)}")
        return self

    def suite_name(self) -> str | None:
        if self.suite in (None, "none", ""):
            return None
        return self.task.value if self.suite == "auto" else self.suite


class ModelConfig(StrictModel):
    encoder: str = Field("minilm", description="encoder alias (minilm, deberta-v3-base, mpnet), Hub id or path")
    tokenizer: str | None = None
    max_length: int = Field(256, ge=8)
    head_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    init_from: str | None = Field(None, description="start from a saved guardmatch model directory instead")


class OptimConfig(StrictModel):
    lr: float = Field(5e-5, gt=0)
    head_lr: float | None = Field(None, gt=0, description="learning rate of the heads (default: lr)")
    weight_decay: float = Field(5e-4, ge=0)
    layer_decay: float = Field(0.75, gt=0, le=1.0, description="layer-wise lr decay (1 = none)")
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    max_steps: int = Field(300, ge=1, description="training steps (replaced by a pass-based schedule when "
                                                   "`epochs` or `pool_passes` is set)")
    epochs: float | None = Field(None, gt=0, description="passes over the labeled examples (every algorithm)")
    pool_passes: float | None = Field(None, gt=0, description=(
        "SSL: passes over the unlabeled pool; with `epochs` too, the longer of the two schedules"))
    length_buckets: int = Field(0, ge=0, description=(
        "sort each window of this many batches by text length before batching (less padding, faster "
        "steps; every item still comes once an epoch); 0 = plain shuffle"))
    batch_size: int = Field(8, ge=1, description="labeled batch B per process")
    mu: int = Field(1, ge=1, description="unlabeled batch = mu * B")
    grad_clip: float | None = Field(1.0, gt=0)
    eval_batch_size: int = Field(64, ge=1)


class ViewsConfig(StrictModel):
    """Strong views come from an augmentation cache (see `guardmatch augment`)."""

    cache: str | None = Field(None, description="view cache directory, or augmenter name under cache_dir")
    cache_dir: str | None = Field(None, description="cache root (else $GUARDMATCH_CACHE_DIR, ~/.cache/guardmatch)")
    min_coverage: float = Field(1.0, ge=0, le=1, description="fraction of the pool that must have views")


class TrainConfig(StrictModel):
    """One training run: data, model, algorithm, optimisation, bookkeeping."""

    output_dir: str = "runs/run"
    seed: int = 0
    algorithm: str = "supervised"
    algorithm_params: dict[str, Any] = Field(default_factory=dict)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    views: ViewsConfig = Field(default_factory=ViewsConfig)
    mode: Literal["full", "top_layers", "frozen"] = Field(
        "full", description="full fine-tuning, fine-tune the top N layers from cached states, or heads only"
    )
    top_layers: int = Field(2, ge=1)
    precision: Literal["fp32", "bf16"] = Field("fp32", description=(
        "bf16: mixed precision (autocast, fp32 master weights); faster steps on CPUs with "
        "AVX512-BF16 or AMX (one MPNet layer 3x, a whole MiniLM step ~1.7x) and on GPUs; elsewhere "
        "(AVX2-only CPUs, where emulated bf16 is 26x slower) the run falls back to fp32 with a warning"))
    feature_cache_dir: str | None = None
    eval_every: int = Field(0, ge=0, description="validate every N steps (0: only at the end)")
    save_every: int = Field(100, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    log_every: int = Field(10, ge=1)
    threads: int | None = Field(None, ge=1)
    resume: bool = Field(True, description="continue from the newest checkpoint in output_dir if any")

    @model_validator(mode="after")
    def _algorithm_known(self) -> "TrainConfig":
        """The algorithm and its parameters are checked here, before any data is read or file written."""
        from guardmatch.algorithms.base import ALGORITHMS

        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm: unknown algorithm {self.algorithm!r}; "
                             f"available: {', '.join(ALGORITHMS.names())}")
        try:
            self.algorithm_config()
        except ValidationError as exc:
            raise ValueError(f"algorithm_params of {self.algorithm}: {'; '.join(validation_problems(exc))}") from None
        return self

    def algorithm_config(self) -> AlgorithmConfig:
        """The validated :class:`~guardmatch.algorithms.AlgorithmConfig` of ``algorithm``: its
        ``algorithm_params``, with an algorithm ``seed`` that is not set following the run's ``seed``
        (so each run seed samples its own random choices, e.g. MarginMatch's threshold examples)."""
        from guardmatch.algorithms.base import ALGORITHMS

        config_cls = ALGORITHMS.get(self.algorithm).config_cls
        params = dict(self.algorithm_params)
        if "seed" in config_cls.model_fields and "seed" not in params:
            params["seed"] = self.seed
        return config_cls.model_validate(params)


def validation_problems(err: ValidationError) -> list[str]:
    """One line per problem, each naming its key: ``optim.lr: Input should be greater than 0 (got -1)``."""
    problems = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        got = e.get("input")
        if not loc:  # a check over the whole config: its message names the key
            problems.append(e["msg"].removeprefix("Value error, "))
            continue
        got_s = "" if isinstance(got, dict) else f" (got {got!r})"
        problems.append(f"{loc}: {e['msg']}{got_s}")
    return problems


def format_validation_error(err: ValidationError, source: str) -> str:
    """The message of a :class:`ConfigError`: the source, then one line per problem."""
    return "\n".join([f"{source}: invalid configuration", *(f"  - {p}" for p in validation_problems(err))])


EXTENDS_KEY = "extends"


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A config file as a mapping, its ``extends:`` chain resolved (the file's keys win)."""
    return _load_yaml_chain(Path(path), ())


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    return data


def _load_yaml_chain(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    seen = (*seen, path.resolve())
    data = _read_mapping(path)
    parent = data.pop(EXTENDS_KEY, None)
    if parent is None:
        return data
    if not isinstance(parent, str) or not parent.strip():
        raise ConfigError(f"{path}: `{EXTENDS_KEY}` must be the path of another config file, got {parent!r}")
    parent_path = Path(parent).expanduser()
    if not parent_path.is_absolute():
        parent_path = path.parent / parent_path
    if not parent_path.exists():
        raise ConfigError(f"{path}: `{EXTENDS_KEY}: {parent}` names no file ({parent_path} not found)")
    if (resolved := parent_path.resolve()) in seen:
        chain = " -> ".join(str(p) for p in (*seen, resolved))
        raise ConfigError(f"{path}: `{EXTENDS_KEY}` loops back to a file already in the chain ({chain})")
    return deep_merge(_load_yaml_chain(parent_path, seen), data)


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` merged into a copy of ``base``: mappings merge key by key, anything else (lists
    included) is replaced; dotted keys (``optim.lr``) are expanded."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if "." in key:
            nested: dict[str, Any] = {}
            set_dotted(nested, key, copy.deepcopy(value))
            out = deep_merge(out, nested)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """``set_dotted(d, "optim.lr", 1e-4)`` sets ``d["optim"]["lr"]`` (creating missing sections)."""
    parts = dotted.split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {dotted!r}: {p!r} is not a section")
    node[parts[-1]] = value


ModelT = TypeVar("ModelT", bound=BaseModel)


def build_config(model_cls: type[ModelT], path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                 *, data: dict[str, Any] | None = None, source: str = "command-line options") -> ModelT:
    """Validate a YAML file (or ``data``) plus dotted ``overrides`` into ``model_cls``.

    ``overrides`` are ``{"optim.lr": 1e-4}`` (flags, ``--set``); a None value is a flag not given and
    is skipped. A :class:`ConfigError` names each bad key and the file (else ``source``).
    """
    raw = load_yaml(path) if path else copy.deepcopy(data or {})
    for key, value in (overrides or {}).items():
        if value is not None:
            set_dotted(raw, key, value)
    try:
        return model_cls.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path) if path else source)) from None


def load_train_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    return build_config(TrainConfig, path, overrides)
