"""One routing round of the review loop from Python (``guardmatch review route`` calls this).

::

    from guardmatch.review.loop import route_store

    report = route_store("queue.db", run="runs/marginmatch", strategy="margin", budget=100)
    report.review, report.pseudo, report.store["queue"]

:func:`route_store` fills the store (a run's seed labels and pool, a labeled seed file, pool files),
scores every item that may still be routed, ranks them with a strategy of
:mod:`~guardmatch.review.routing`, and records the routing (predictions, pseudo-labels, queue) in
the store. Under ``torchrun`` / ``accelerate launch`` the scoring is sharded over the processes and
rank 0 alone writes the store.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from guardmatch.data.example import Task
from guardmatch.errors import ConfigError
from guardmatch.review.routing import Strategy
from guardmatch.review.store import ReviewStore


@dataclass
class RouteReport:
    """What a routing round did: items added by source, counts of each part, the store's status after.

    ``apm_unavailable`` is the reason the run's APM table was not used (e.g. a supervised or FixMatch
    run keeps none), None when it was used or not looked for.
    """

    db: Path
    routing_id: int
    model_version: str
    strategy: str
    scored: int
    added: dict[str, int]
    pseudo: int
    review: int
    untouched: int
    store: dict[str, Any]
    apm_unavailable: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "db": str(self.db)}


def route_store(
    db: str | Path,
    *,
    run: str | Path | None = None,
    model: str | Path | None = None,
    pools: Sequence[str | Path] = (),
    seed_file: str | Path | None = None,
    strategy: str | Strategy = "margin",
    budget: int = 100,
    pseudo_threshold: float = 0.95,
    rng_seed: int = 0,
    task: Task | str | None = None,
    data_dir: str | None = None,
    batch_size: int = 64,
    progress: bool = False,
) -> RouteReport | None:
    """Fill the store at ``db`` (created if missing), score it with a model and queue ``budget`` items.

    ``run`` (a training run directory) adds its seed labels and pool and supplies its model
    (``RUN/model``, unless ``model`` is given) and, where the run kept one, its APM table;
    ``seed_file`` adds audited labels; ``pools`` add unlabeled files. ``task`` fixes a new store's
    task (default: the model's). Items labeled, in conflict or already queued are not routed
    again. Returns None on the non-main ranks of a data-parallel job.
    """
    from guardmatch.data.loaders import load_file
    from guardmatch.distributed import group
    from guardmatch.model import GuardClassifier, load_config
    from guardmatch.review.routing import (
        StrategyUnavailableError,
        attach_apm,
        get_strategy,
        model_version,
        route,
        score_pool,
    )
    from guardmatch.review.sources import config_yaml, load_run_data, resolve_source_path
    from guardmatch.storage.lineage import register_derived

    strat = get_strategy(strategy)
    run = Path(run) if run is not None else None
    if strat.name == "apm_instability" and run is None:
        raise ConfigError("apm_instability needs --run (the training state of the model)")
    if model is not None:
        model_dir = Path(model)
    elif run is not None:
        model_dir = run / "model"
    else:
        raise ConfigError("give --run RUN_DIR or --model MODEL_DIR")
    mcfg = load_config(model_dir)
    dist = group()
    if not dist.is_main:  # a scoring shard: wait for rank 0 to add the items, score, leave the store to rank 0
        dist.barrier()
        with ReviewStore.open(db, create=False) as store:
            score_pool(GuardClassifier.from_pretrained(model_dir), store.routing_candidates(), store.task,
                       batch_size=batch_size)
        return None
    with ReviewStore.open(db, create=True, task=task or mcfg.task.value) as store:
        added: dict[str, int] = {}
        sources: list[Path] = []
        if run is not None:
            rd = load_run_data(run, data_dir)
            if not rd.is_round:  # a retrain round's labels are already in the store, with provenance
                added["seed"] = store.add_items(rd.seed, seed=True)["added"]
                if store.get_meta("base_config") is None:
                    store.set_meta("base_config", config_yaml(rd.config))
                    store.set_meta("base_run", str(run))
            added["pool"] = store.add_items(rd.pool)["added"]
            specs = [rd.config.data.train, *rd.config.data.extra_unlabeled]
            sources += [p for p in (resolve_source_path(s, store.task, data_dir) for s in specs) if p is not None]
        if seed_file is not None:
            added["seed_file"] = store.add_items(load_file(seed_file, task=store.task).examples, seed=True)["added"]
            sources.append(Path(seed_file))
        for p in pools:
            exs = load_file(p, task=store.task, require_label=False).examples
            added[str(p)] = store.add_items([ex.unlabeled() for ex in exs])["added"]
            sources.append(Path(p))
        for src in sources:
            register_derived(src, db, kind="review_db")
        dist.barrier()  # the items are in: the other ranks read them
        version = model_version(model_dir)
        scores = score_pool(GuardClassifier.from_pretrained(model_dir), store.routing_candidates(), store.task,
                            batch_size=batch_size, model_version=version, progress=progress)
        apm_unavailable = None
        # APM also filters pseudo-labels: attach it wherever the run kept an algorithm state
        if run is not None and (strat.name == "apm_instability" or (run / "algorithm.safetensors").is_file()):
            try:
                attach_apm(scores, run)
            except StrategyUnavailableError as exc:  # no APM table, or one that cannot be mapped to the pool
                if strat.name == "apm_instability":
                    raise
                apm_unavailable = str(exc)
                scores.info["apm_unavailable"] = apm_unavailable
        routing = route(scores, pseudo_threshold, budget, strat, rng=rng_seed)
        rid = store.add_routing(scores, routing, budget=budget,
                                info={"run": str(run) if run else None, "model_dir": str(model_dir), **scores.info})
        return RouteReport(db=Path(db), routing_id=rid, model_version=version, strategy=strat.name, scored=len(scores),
                           added=added, **routing.counts(), store=store.status(), apm_unavailable=apm_unavailable)
