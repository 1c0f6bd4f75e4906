"""``guardmatch retrain``: merge reviewed labels into the seed set and train the next round.

What a round trains on (kept honest):

* **labels** = the store's ``seed`` labels + ``human`` labels (resolved, agreeing reviews; items
  with an open conflict are left out until resolved). Pseudo-labels are *not* used as labels by
  default: the SSL algorithm pseudo-labels the pool itself, with its own confidence filter, from
  the model being trained; ``include_pseudo=True`` adds them (plain self-training, provenance
  ``pseudo`` kept in the file).
* **pool** = every other stored item, labels never written (for SSL algorithms, passed as
  ``data.extra_unlabeled``; a supervised round does not read it).
* Both are written under ``<output_dir>/round_data/`` (owner-only) as normalized JSONL, each
  labeled row carrying its provenance; the run then uses ``data.train=<labels file>``,
  ``data.labels="all"`` (``data.validation`` is still taken from these labels, never from a test
  set), and the base config's everything else. Rows whose text is in an evaluation set are
  dropped by the run as usual (``data.on_overlap``).
* By default each round trains from the base encoder (rounds differ only by their labels);
  ``warm_start`` continues from a given model instead (cheaper, but rounds then compound);
  ``warm_start=True`` picks the last finished round's model (the base run's before the first).
* The config is the run's own by default: :func:`base_config` reads the one stored when the store
  was filled from a run (``review route --run``), with dotted overrides applied. The round
  directory defaults to ``<db stem>-rounds/round-<n>`` next to the store.

Each round is recorded in the store's ``rounds`` table (labels used by provenance and class, the
labels file and its hash, pool size, config, model version, metrics) and in
``<output_dir>/guardmatch_round.json``. A round interrupted mid-training resumes from its
checkpoints when run again with the same labels; a finished round with the same labels is not
trained twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence, cast

from rich.console import Console

from guardmatch.data.example import LABEL_NAMES, Example
from guardmatch.errors import GuardmatchError
from guardmatch.review.sources import round_marker
from guardmatch.review.store import ReviewStore
from guardmatch.storage.files import secure_open
from guardmatch.storage.lineage import register_derived

if TYPE_CHECKING:
    from guardmatch.config import TrainConfig


class RetrainError(GuardmatchError, ValueError):
    """A retraining round the store's labels cannot support, or an output dir that holds another round."""


@dataclass
class RoundData:
    labeled: list[Example]
    pool: list[Example]
    counts: dict[str, Any]
    labels_hash: str


@dataclass
class RetrainResult:
    round_id: int
    output_dir: Path
    model_dir: Path
    model_version: str
    labels_used: dict[str, Any]
    metrics: dict[str, Any]
    labels_file: Path
    pool_file: Path
    reused: bool = False
    evaluation: Any = field(default=None, repr=False)


def round_data(store: ReviewStore, include_pseudo: bool = False) -> RoundData:
    """The labeled set (seed + human [+ pseudo]) and the unlabeled pool, from the store."""
    provs = ("seed", "human", "pseudo") if include_pseudo else ("seed", "human")
    labels = store.labels(provs)
    labeled, pool = [], []
    for ex in store.items():
        if ex.id in labels:
            label, prov = labels[ex.id]
            labeled.append(Example(ex.id, ex.prompt, ex.response, label, ex.source,
                                   {**ex.metadata, "provenance": prov}))
        else:
            pool.append(ex)
    by_prov = {p: 0 for p in provs}
    by_class = {name: 0 for name in LABEL_NAMES}
    for label, prov in labels.values():
        by_prov[prov] += 1
        by_class[LABEL_NAMES[label]] += 1
    counts = {"total": len(labeled), "by_provenance": by_prov, "by_class": by_class, "pool": len(pool),
              "open_conflicts_left_out": len(store.conflicts("open")), "include_pseudo": include_pseudo}
    digest = hashlib.sha256(json.dumps(sorted((ex.id, ex.label) for ex in labeled)).encode()).hexdigest()
    return RoundData(labeled, pool, counts, digest)


def _write_jsonl(path: Path, examples: Sequence[Example], with_labels: bool) -> None:
    with secure_open(path, "w") as fh:
        for ex in examples:
            d = ex.to_dict()
            if not with_labels:
                d["label"] = None
            fh.write(json.dumps(d, ensure_ascii=False) + "\n")


def _metrics(report: Any) -> dict[str, Any]:
    if report is None:
        return {}
    keep = ("n", "positives", "f1", "precision", "recall", "auprc", "threshold")
    return {name: {**{k: r.metrics[k] for k in keep}, "ece": r.ece} for name, r in report.results.items()}


def base_config(store: ReviewStore, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """The :class:`~guardmatch.config.TrainConfig` stored with the store's base run, ``overrides``
    (dotted keys: ``{"optim.max_steps": 100}``) applied; ConfigError when none is stored."""
    import yaml

    from guardmatch.config import TrainConfig, build_config
    from guardmatch.errors import ConfigError

    stored = store.get_meta("base_config")
    if stored is None:
        raise ConfigError(f"{store.path}: no base config stored (the store was not filled from a run); pass --config")
    return build_config(TrainConfig, data=yaml.safe_load(stored), overrides=dict(overrides or {}),
                        source=f"{store.path} (base config)")


def _last_model(store: ReviewStore) -> str | None:
    """The last finished round's model, else the base run's (None if neither is known)."""
    done = [r for r in store.rounds() if r["status"] == "done"]
    if done:
        return done[-1]["model_dir"]
    base_run = store.get_meta("base_run")
    return str(Path(base_run) / "model") if base_run else None


def retrain(
    store: ReviewStore,
    config: Any,
    output_dir: str | Path | None = None,
    *,
    include_pseudo: bool = False,
    warm_start: bool | str | Path | None = None,
    eval_suite: Mapping[str, Sequence[Example]] | None = None,
    console: Console | None = None,
) -> RetrainResult:
    """Train the next round from the store's labels (see the module docstring); record it.

    ``output_dir`` defaults to ``<db stem>-rounds/round-<finished rounds + 1>``; ``warm_start`` is a
    model directory, or True for the last finished round's model (the base run's before the first).
    """
    from guardmatch.algorithms import ALGORITHMS
    from guardmatch.data.overlap import remove_overlap
    from guardmatch.evaluation.report import evaluate_model
    from guardmatch.model import GuardClassifier
    from guardmatch.review.routing import model_version
    from guardmatch.training.run import run_training

    console = console or Console(stderr=True)
    if output_dir is None:
        done = sum(r["status"] == "done" for r in store.rounds())
        output_dir = store.path.with_name(store.path.stem + "-rounds") / f"round-{done + 1}"
    output_dir = Path(output_dir)
    if warm_start is True:
        warm_start = _last_model(store)
    data = round_data(store, include_pseudo)
    if data.counts["total"] < 2:
        raise RetrainError(f"{store.path}: only {data.counts['total']} usable label(s); a round needs at least 2")
    present = {cast(int, ex.label) for ex in data.labeled}  # round_data keeps labeled examples only
    if len(present) < 2:
        raise RetrainError(f"{store.path}: every usable label is {LABEL_NAMES[present.pop()]}; a round needs both classes")
    for prev in store.rounds():
        if prev["output_dir"] == str(output_dir) and prev["status"] == "done" and prev["labels_hash"] == data.labels_hash:
            console.print(f"[dim]round {prev['id']} already trained these labels into {output_dir}[/]")
            return RetrainResult(prev["id"], output_dir, Path(prev["model_dir"]), prev["model_version"],
                                 prev["labels_used"], prev["metrics"], Path(prev["labels_file"]),
                                 output_dir / "round_data" / "pool.jsonl", reused=True)
        if prev["output_dir"] == str(output_dir) and prev["labels_hash"] != data.labels_hash:
            raise RetrainError(f"{output_dir} already holds round {prev['id']} trained on other labels; "
                             "use a new output directory")

    cfg = config.model_copy(deep=True)
    cfg.output_dir = str(output_dir)
    cfg.data.task = store.task
    labeled, pool = data.labeled, data.pool
    if eval_suite is not None:
        # the run gets no suite, so drop test overlap here, as the run would
        labeled, n_lab = remove_overlap(labeled, eval_suite, store.task)
        pool, n_pool = remove_overlap(pool, eval_suite, store.task)
        data.counts["removed_test_overlap"] = {"labeled": n_lab, "pool": n_pool}
        cfg.data.suite = "none"
    round_dir = output_dir / "round_data"
    labels_file, pool_file = round_dir / "labels.jsonl", round_dir / "pool.jsonl"
    _write_jsonl(labels_file, labeled, with_labels=True)
    _write_jsonl(pool_file, pool, with_labels=False)
    register_derived(store.path, output_dir, kind="retrain_round")
    uses_pool = ALGORITHMS.get(cfg.algorithm).uses_unlabeled
    cfg.data.train = str(labels_file)
    cfg.data.train_format = "normalized"
    cfg.data.labels = "all"
    cfg.data.extra_unlabeled = [str(pool_file)] if uses_pool and pool else []
    if warm_start:
        cfg.model.init_from = str(warm_start)
    config_dump = cfg.model_dump(mode="json")
    running = [r for r in store.rounds() if r["output_dir"] == str(output_dir) and r["status"] != "done"]
    round_id = running[-1]["id"] if running else store.start_round(
        output_dir=str(output_dir), labels_file=str(labels_file), labels_hash=data.labels_hash,
        labels_used=data.counts, pool_size=len(pool), config=config_dump)
    round_marker(output_dir, {"store": str(store.path), "round": round_id, "labels_hash": data.labels_hash,
                              "labels_used": data.counts})
    console.print(f"[bold]round {round_id}[/]: {data.counts['total']} labels "
                  f"({', '.join(f'{k} {v}' for k, v in data.counts['by_provenance'].items())}), pool {len(pool)}")
    try:
        result = run_training(cfg, console=console)
        report = result.evaluation
        if eval_suite is not None:
            model = GuardClassifier.from_pretrained(result.model_dir)
            report = evaluate_model(model, eval_suite, batch_size=cfg.optim.eval_batch_size, name=str(output_dir))
            report.save(output_dir / "eval")
    except BaseException:
        store.finish_round(round_id, model_dir=None, model_version=None, metrics={}, status="failed")
        raise
    metrics = _metrics(report)
    metrics["_train"] = {"steps": result.train.steps, "validation": result.train.validation}
    version = model_version(result.model_dir)
    store.finish_round(round_id, model_dir=str(result.model_dir), model_version=version, metrics=metrics)
    return RetrainResult(round_id, output_dir, result.model_dir, version, data.counts, metrics, labels_file, pool_file,
                         evaluation=report)
