"""One whole run from a :class:`TrainConfig`: data, split, views, model, training, evaluation.

This is the Python equivalent of ``guardmatch train``::

    from guardmatch import TrainConfig, run_training
    result = run_training(TrainConfig(algorithm="fixmatch", output_dir="runs/fm"))
    print(result.evaluation.to_markdown())

Outputs under ``output_dir``: ``split_manifest.json``, ``metrics.jsonl``, ``checkpoints/``,
``model/`` (the trained classifier), ``eval/`` (JSON, markdown, scores) and ``run.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from accelerate import Accelerator
from rich.console import Console

from guardmatch.algorithms import build_algorithm
from guardmatch.config import DataConfig, TrainConfig
from guardmatch.data.deployment import DeploymentSplit, deployment_splits
from guardmatch.data.example import Example, Task
from guardmatch.data.loaders import LoadResult
from guardmatch.data.overlap import check_overlap, remove_overlap
from guardmatch.data.splits import Split, make_split, stratified_subset
from guardmatch.data.suites import Suite, load_source, load_suite
from guardmatch.data.validation import DataError
from guardmatch.errors import ConfigError
from guardmatch.evaluation.report import EvaluationReport, evaluate_scores
from guardmatch.model import GuardClassifier
from guardmatch.training.optim import scheduled_steps
from guardmatch.training.trainer import Trainer, TrainResult


@dataclass
class PreparedData:
    """Everything a run trains and evaluates on, after splitting and overlap removal."""

    split: Split
    pool: list[Example]
    suite: Suite | None
    notes: list[str] = field(default_factory=list)
    deployment: dict[str, DeploymentSplit] = field(default_factory=dict)  # the suite sets split by the protocol


@dataclass
class RunResult:
    config: TrainConfig
    output_dir: Path
    model_dir: Path
    train: TrainResult
    evaluation: EvaluationReport | None
    timings: dict[str, float]
    is_main: bool = True


def _harmful_rate(examples: Sequence[Example]) -> float | None:
    labels = [ex.label for ex in examples if ex.label is not None]
    return round(sum(labels) / len(labels), 6) if labels else None


def load_configured_source(spec: str, task: Task, data: DataConfig, *, require_label: bool = True) -> LoadResult:
    """:func:`~guardmatch.data.suites.load_source` with the data config's format, data dir and Hub setting."""
    path = Path(spec).expanduser()
    return load_source(path, task, format=data.train_format if path.is_file() else None, data_dir=data.data_dir,
                       allow_hub=data.allow_hub, require_label=require_label)


def prepare_data(config: TrainConfig, console: Console | None = None) -> PreparedData:
    """Load the training source and the test suite, drop (or refuse) overlap, split, build the pool."""
    data = config.data
    task = data.task
    notes: list[str] = []
    source = load_configured_source(data.train, task, data)
    examples = source.examples
    if source.report.skipped:
        notes.append(f"{data.train}: skipped {dict(source.report.skipped)}")
    if data.source_subset is not None:
        examples = stratified_subset(examples, data.source_subset, data.source_subset_seed, task)
        notes.append(f"{data.train}: source = a label-stratified subset of {len(examples)} distinct texts "
                     f"(seed {data.source_subset_seed})")
    suite = None
    suite_name = data.suite_name()
    if suite_name:
        suite = load_suite(suite_name, data.data_dir, data.allow_hub)
        notes.extend(suite.notes)
        problems = check_overlap(examples, suite, task)
        if problems:
            if data.on_overlap == "error":
                raise DataError(problems, context=f"{data.train} overlaps the {data.suite_name()} suite")
            examples, removed = remove_overlap(examples, suite, task)
            notes.append(f"removed {removed} training rows whose text is also in a test set ({len(problems)} test rows)")
    deployment: dict[str, DeploymentSplit] = {}
    if data.deployment_sets and suite is not None:
        deployment = deployment_splits(suite.sets, task, seed=data.deployment_seed, names=tuple(data.deployment_sets))
        missing = [n for n in data.deployment_sets if n not in deployment]
        if missing:
            raise ConfigError(f"data.deployment_sets {missing}: not in the {suite.name} suite ({', '.join(suite)})")
        suite = evaluation_halves(suite, deployment)
        notes.append(f"deployment protocol (seed {data.deployment_seed}): {', '.join(deployment)} evaluated on their "
                     "evaluation halves ('@eval'); their deployment halves are "
                     + ("in the unlabeled pool (labels hidden)" if data.deployment_pool else "not used"))
    extras: list[Example] = []
    if data.deployment_pool:
        extras.extend(ex for d in deployment.values() for ex in d.pool)
    for extra in data.extra_unlabeled:
        extra_examples = load_configured_source(extra, task, data, require_label=False).examples
        if suite is not None:
            extra_examples, removed = remove_overlap(extra_examples, suite, task)
            if removed:
                notes.append(f"{extra}: removed {removed} rows also in a test set")
        extras.extend(extra_examples)
    split = make_split(
        examples, data.labels, seed=config.seed, strategy=data.strategy, validation=data.validation,
        extra_unlabeled=extras, source=data.train,
    )
    pool = list(split.unlabeled)
    if not data.in_source_pool:
        extra_ids = set(split.manifest.extra_unlabeled_ids)
        pool = [ex for ex in pool if ex.id in extra_ids]
        notes.append(f"unlabeled pool: only the extra and deployment sources ({len(pool)} texts), not the rest of "
                     f"{data.train}")
    if data.unlabeled_limit is not None and len(pool) > data.unlabeled_limit:
        keep = np.sort(np.random.default_rng([config.seed, 13]).choice(len(pool), data.unlabeled_limit, replace=False))
        pool = [pool[i] for i in keep]
        notes.append(f"unlabeled pool capped at {data.unlabeled_limit}")
    for note in notes:
        (console or Console(stderr=True)).print(f"[dim]note:[/] {note}")
    return PreparedData(split=split, pool=pool, suite=suite, notes=notes, deployment=deployment)


def evaluation_halves(suite: Suite, deployment: dict[str, DeploymentSplit]) -> Suite:
    """``suite`` with each split set replaced by its evaluation half, named ``<name>@eval``."""
    out = Suite(suite.name, suite.task, notes=list(suite.notes))
    for key in suite:
        name = f"{key}@eval" if key in deployment else key
        out.sets[name] = deployment[key].evaluation if key in deployment else suite.sets[key]
        out.datasets[name], out.origins[name], out.reports[name] = (suite.datasets[key], suite.origins[key],
                                                                    suite.reports[key])
    return out


def load_views(config: TrainConfig, pool: Sequence[Example]) -> list[list[Example]]:
    """Strong views of every pool example from the augmentation cache (training only reads the cache)."""
    from guardmatch.augment.cache import ViewCache

    views_cfg = config.views
    if not views_cfg.cache:
        raise ConfigError(
            f"algorithm {config.algorithm!r} needs strong views: set views.cache (--views) to an augmentation "
            "cache, made with `guardmatch augment`"
        )
    cache = ViewCache.open(views_cfg.cache, cache_root=views_cfg.cache_dir)
    # texts without any accepted view come back empty, and the caller restricts the pool to the
    # covered ones (never their own text as a fake "strong" view)
    return cache.views_for(pool, config.data.task, min_coverage=views_cfg.min_coverage, on_missing="empty")


def run_fingerprint(config: TrainConfig, split: Split, pool: Sequence[Example]) -> str:
    """Identifies a run's inputs, so a checkpoint is never resumed into a different run."""
    cfg = config.model_dump(mode="json", exclude={"output_dir", "resume", "threads", "eval_every", "save_every",
                                                    "keep_checkpoints", "log_every"})
    payload = json.dumps({"config": cfg, "split": split.manifest.content_hash,
                          "pool": hashlib.sha256("\n".join(ex.id for ex in pool).encode()).hexdigest()},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def build_model(config: TrainConfig, num_heads: int, num_outputs: int) -> GuardClassifier:
    if config.model.init_from:
        model = GuardClassifier.from_pretrained(config.model.init_from)
        if model.config.num_heads != num_heads or model.config.num_outputs != num_outputs:
            raise ConfigError(
                f"{config.model.init_from} has {model.config.num_heads} head(s) x {model.config.num_outputs} outputs; "
                f"{config.algorithm} needs {num_heads} x {num_outputs}"
            )
        model.train()
        return model
    return GuardClassifier.from_encoder(
        config.model.encoder,
        task=config.data.task,
        num_heads=num_heads,
        num_outputs=num_outputs,
        max_length=config.model.max_length,
        head_dropout=config.model.head_dropout,
        seed=config.seed,
        tokenizer=config.model.tokenizer,
    )


def prepare_features(
    config: TrainConfig,
    model: GuardClassifier,
    accelerator: Accelerator,
    split: Split,
    pool: Sequence[Example],
    views: Sequence[Sequence[Example]] | None,
    suite: Suite | None,
):
    """CPU fast modes: cache lower-layer states (or pooled vectors) of every text the run will see,
    freeze what the cache replaces, and return the cached input pipeline."""
    from guardmatch.features import FeatureStore
    from guardmatch.training.inputs import CachedInputs

    texts: list[Example] = [*split.labeled, *split.validation, *pool]
    for vs in views or []:
        texts.extend(vs)
    for examples in (suite or {}).values():
        texts.extend(ex for ex in examples if ex.label is not None)
    with accelerator.main_process_first():  # one process writes the cache, the others then read it
        store = FeatureStore(model, config.mode, config.top_layers, root=config.feature_cache_dir)
        store.build(texts, batch_size=config.optim.eval_batch_size, progress=accelerator.is_main_process,
                    description=f"caching {config.mode} features")
    store.freeze_lower()
    return CachedInputs(store, accelerator.device)


def run_training(
    config: TrainConfig,
    *,
    accelerator: Accelerator | None = None,
    console: Console | None = None,
    evaluate: bool = True,
) -> RunResult:
    """Train per ``config``, save the model to ``output_dir/model`` and evaluate on the suite."""
    console = console or Console(stderr=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if accelerator is None:
        from accelerate.state import AcceleratorState

        precision = mixed_precision(config.precision)
        if config.precision == "bf16" and precision == "no":
            console.print("[yellow]precision bf16: no native bf16 here (a CUDA GPU with bf16, or a CPU with "
                          "AVX512-BF16 or AMX); emulated bf16 ran 26x slower than fp32 on an AVX2 CPU "
                          "(benchmarks/results/bf16_cpu.md): training in fp32[/yellow]")
        if AcceleratorState._shared_state and AcceleratorState().mixed_precision != precision:
            AcceleratorState._reset_state()  # one process, runs of several precisions (grids, benchmarks)
        accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=precision)
    out = Path(config.output_dir)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    prepared = prepare_data(config, console if accelerator.is_main_process else Console(quiet=True))
    split, pool = prepared.split, prepared.pool
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        split.save_manifest(out / "split_manifest.json")
        (out / "config.yaml").write_text(_to_yaml(config))
    timings["data_s"] = time.perf_counter() - t

    t = time.perf_counter()
    probe = build_algorithm(config.algorithm, config.algorithm_config(), num_classes=2, pool_size=max(1, len(pool)))
    uses_pool = probe.uses_unlabeled
    algorithm = probe if uses_pool else build_algorithm(config.algorithm, config.algorithm_config(), 2, 0)
    algorithm.to(accelerator.device)
    views = None
    if uses_pool:
        views = load_views(config, pool)
        covered = [i for i, v in enumerate(views) if v]
        if len(covered) < len(pool):
            note = (f"views cover {len(covered)} of {len(pool)} pool examples: the pool is restricted to the "
                    "covered ones (views.min_coverage allows this)")
            prepared.notes.append(note)
            console.print(f"[yellow]note:[/] {note}")
            pool = [pool[i] for i in covered]
            views = [views[i] for i in covered]
            algorithm = build_algorithm(config.algorithm, config.algorithm_config(), 2, len(pool))
            algorithm.to(accelerator.device)
    timings["views_s"] = time.perf_counter() - t

    steps = scheduled_steps(config.optim, len(split.labeled), len(pool) if uses_pool else 0,
                            accelerator.num_processes)
    if steps != config.optim.max_steps:
        config = config.model_copy(update={"optim": config.optim.model_copy(update={"max_steps": steps})})
        prepared.notes.append(f"schedule: {steps} steps ({_schedule_note(config, len(split.labeled), len(pool))})")
    model = build_model(config, algorithm.num_heads, algorithm.num_outputs(2))
    inputs = None
    if config.mode != "full":
        t = time.perf_counter()
        inputs = prepare_features(config, model, accelerator, split, pool if uses_pool else [], views,
                                  prepared.suite)
        timings["features_s"] = time.perf_counter() - t
    fingerprint = run_fingerprint(config, split, pool if uses_pool else [])
    provenance = {
        "fingerprint": fingerprint,
        "algorithm": config.algorithm,
        "algorithm_params": config.algorithm_params,
        "train_source": config.data.train,
        "allow_hub": config.data.allow_hub,
        "labels": config.data.labels,
        "labeled_examples": len(split.labeled),
        "train_harmful_rate": _harmful_rate([*split.labeled, *split.validation]),
        "validation_examples": len(split.validation),
        "unlabeled_examples": len(pool) if uses_pool else 0,
        "seed": config.seed,
        "split_fingerprint": split.manifest.content_hash,
        "max_steps": config.optim.max_steps,
        "views": config.views.cache if uses_pool else None,
        "mode": config.mode,
        "top_layers": config.top_layers if config.mode == "top_layers" else None,
    }
    t = time.perf_counter()
    trainer = Trainer(
        config, model, algorithm, split.labeled, pool if uses_pool else (), views, split.validation,
        accelerator=accelerator, inputs=inputs, provenance=provenance, console=console,
    )
    result = trainer.train()
    timings["train_s"] = time.perf_counter() - t
    final = result.model
    final.config.provenance = {**provenance, "selected": "best validation F1" if result.validation else "last step",
                               "validation": result.validation}
    model_dir = out / "model"
    report = None
    if evaluate and prepared.suite is not None:
        t = time.perf_counter()
        scored = {}
        for set_name, examples in prepared.suite.items():
            labeled = [ex for ex in examples if ex.label is not None]
            scored[set_name] = ([ex.label for ex in labeled], trainer.predict_proba(labeled))
        report = EvaluationReport(model=str(model_dir), task=config.data.task.value, threshold=final.config.threshold,
                                  results=evaluate_scores(scored, final.config.threshold),
                                  info={"suite": prepared.suite.describe(), "notes": prepared.notes})
        timings["eval_s"] = time.perf_counter() - t
    if report is not None:  # the model card shows them
        final.config.provenance["metrics"] = {
            name: {k: r.metrics[k] for k in ("f1", "precision", "recall") if k in r.metrics}
            for name, r in report.results.items()}
    if accelerator.is_main_process:
        final.save_pretrained(model_dir)
        if report is not None:
            report.save(out / "eval")
        summary = {
            "config": config.model_dump(mode="json"),
            "provenance": final.config.provenance,
            "timings": timings,
            "precision": "bf16" if accelerator.mixed_precision == "bf16" else "fp32",  # what the steps ran in
            "notes": prepared.notes,
            "f1": report.f1() if report else None,
        }
        (out / "run.json").write_text(json.dumps(summary, indent=2))
    accelerator.wait_for_everyone()
    return RunResult(config, out, model_dir, result, report, timings, accelerator.is_main_process)


def _schedule_note(config: TrainConfig, n_labeled: int, n_pool: int) -> str:
    o = config.optim
    parts = []
    if o.epochs is not None:
        parts.append(f"{o.epochs:g} epochs over {n_labeled} labels")
    if o.pool_passes is not None and n_pool:
        parts.append(f"{o.pool_passes:g} passes over a pool of {n_pool}")
    return " and ".join(parts) + (": the longer schedule" if len(parts) > 1 else "")


def native_bf16() -> bool:
    """Whether bf16 autocast runs natively here: a CUDA GPU with bf16, or a CPU with AVX512-BF16 or AMX.

    Elsewhere (e.g. AVX2-only CPUs) PyTorch emulates bf16 matmuls: 26x slower than fp32 in
    benchmarks/results/bf16_cpu.md."""
    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def mixed_precision(requested: str) -> str:
    """Accelerate's ``mixed_precision`` for a config's ``precision``: ``"bf16"`` only where it is native."""
    return "bf16" if requested == "bf16" and native_bf16() else "no"


def precision_in_effect(requested: str) -> str:
    """The precision a ``precision: <requested>`` setting runs in here: ``"bf16"`` or ``"fp32"``."""
    return "bf16" if mixed_precision(requested) == "bf16" else "fp32"


def _to_yaml(config: TrainConfig) -> str:
    import yaml

    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
