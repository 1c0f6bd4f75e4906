"""``guardmatch review ...`` (route, status, export, import, conflicts, resolve, serve) and ``guardmatch retrain``."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Optional

import typer

from guardmatch.cli.common import (
    ExchangeFormat,
    RoutingStrategy,
    choice_value,
    console,
    friendly_errors,
    parse_assignments,
    print_json,
    stdout,
)
from guardmatch.data.example import Task

review_app = typer.Typer(
    name="review",
    help="Human review loop: route a pool to review, exchange files, review page, conflicts.",
    no_args_is_help=True,
)


def _default_reviewer() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers)
        return ""


def _open(db: Path, create: bool = False, task: str | None = None):
    from guardmatch.review.store import ReviewStore

    return ReviewStore.open(db, create=create, task=task)


@review_app.command("route")
def route_cmd(
    db: Path = typer.Argument(..., help="review store (SQLite file; created if missing)"),
    run: Optional[Path] = typer.Option(None, help="training run directory: its model, seed labels, pool and APM"),
    model: Optional[Path] = typer.Option(None, help="model directory (default: RUN/model)"),
    pool: Optional[list[Path]] = typer.Option(None, help="unlabeled pool file(s) to add (normalized jsonl, csv ...)"),
    seed_file: Optional[Path] = typer.Option(None, "--seed-file", help="labeled seed file to add (audited labels)"),
    strategy: RoutingStrategy = typer.Option(RoutingStrategy.margin, help="how to rank the pool for review"),
    budget: int = typer.Option(100, help="review budget N: items added to the queue"),
    pseudo_threshold: float = typer.Option(0.95, help="confidence at or above which an item is pseudo-labeled "
                                                      "(1 = never)"),
    rng_seed: int = typer.Option(0, "--rng-seed", help="seed for random ranking and tie-breaks"),
    task: Optional[Task] = typer.Option(None, help="new stores; default: the model's task"),
    data_dir: Optional[str] = typer.Option(None, help="local data root"),
    batch_size: int = typer.Option(64, help="scoring batch size"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Score the store's unlabeled items with a model and queue the most useful ones for review."""
    from guardmatch.review.loop import route_store

    with friendly_errors():
        report = route_store(db, run=run, model=model, pools=pool or [], seed_file=seed_file,
                             strategy=choice_value(strategy), budget=budget, pseudo_threshold=pseudo_threshold,
                             rng_seed=rng_seed, task=choice_value(task), data_dir=data_dir, batch_size=batch_size,
                             progress=True)
    if report is None:  # a scoring shard of a data-parallel job: rank 0 reports
        return
    if report.apm_unavailable:
        console.print(f"[yellow]warning[/]: routing without APM: {report.apm_unavailable}")
    if as_json:
        print_json(report.to_dict())
    else:
        stdout.print(f"routing {report.routing_id} with {report.model_version}: scored {report.scored}, queued "
                     f"{report.review} for review ({report.strategy}), pseudo-labeled {report.pseudo}, "
                     f"left {report.untouched}")
        stdout.print(f"queue: {report.store['queue']}")


@review_app.command("status")
def status_cmd(
    db: Path = typer.Argument(..., help="review store"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Items, labels by provenance, queue progress, conflicts, imports, rounds."""
    with friendly_errors():
        with _open(db) as store:
            info = store.status()
            info["rounds_detail"] = [{k: r[k] for k in ("id", "status", "labels_used", "model_version", "metrics")}
                                     for r in store.rounds()]
    if as_json:
        print_json(info)
        return
    stdout.print(f"{db}: {info['items']} items, task {info['task']}, schema v{info['schema_version']}")
    stdout.print(f"labels: {info['labels']}; reviews: {info['reviews']}; open conflicts: {info['open_conflicts']}")
    stdout.print(f"queue: {info['queue']}")
    for r in info["rounds_detail"]:
        f1 = {k: round(v["f1"], 3) for k, v in r["metrics"].items() if isinstance(v, dict) and "f1" in v}
        stdout.print(f"round {r['id']} ({r['status']}): {r['labels_used'].get('by_provenance')} -> F1 {f1}")


@review_app.command("export")
def export_cmd(
    db: Path = typer.Argument(..., help="review store"),
    out: Path = typer.Argument(..., help="file to write"),
    fmt: ExchangeFormat = typer.Option(ExchangeFormat.jsonl, "--format", "-f", help="file format"),
    all_queued: bool = typer.Option(False, "--all", help="the whole queue, not only items still pending"),
) -> None:
    """Write the review queue for people or another tool (audited)."""
    from guardmatch.review.exchange import export_queue

    with friendly_errors():
        with _open(db) as store:
            info = export_queue(store, out, choice_value(fmt), which="queue" if all_queued else "pending")
    stdout.print(f"wrote {info['rows']} items to {info['path']} ({info['format']})"
                 + (f"; also {', '.join(info['extra_files'])}" if info["extra_files"] else ""))


@review_app.command("import")
def import_cmd(
    db: Path = typer.Argument(..., help="review store"),
    file: Path = typer.Argument(..., help="reviewed file (jsonl, csv, Argilla records, Label Studio tasks)"),
    fmt: Optional[ExchangeFormat] = typer.Option(None, "--format", "-f", help="file format (default: detect)"),
    reviewer: Optional[str] = typer.Option(None, help="reviewer for rows that do not name one"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="import the valid rows, report the bad ones"),
    progress_every: int = typer.Option(1000, help="print progress every N rows"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Import reviews: all-or-nothing, idempotent, conflicts reported (never silently overwritten)."""
    from guardmatch.review.exchange import import_reviews

    def progress(n: int, total: int) -> None:
        sys.stderr.write(f"importing: {n}/{total} rows\n")
        sys.stderr.flush()

    with friendly_errors():
        with _open(db) as store:
            report = import_reviews(store, file, choice_value(fmt), reviewer=reviewer, errors="skip" if skip_bad else "raise",
                                    progress=progress, progress_every=max(1, progress_every))
    if as_json:
        print_json(report)
        return
    if report["already_imported"]:
        stdout.print(f"{file} was already imported ({report['imported_at']}): nothing changed")
        return
    stdout.print(f"{file} ({report['format']}): {report['stored']} reviews stored, {report['duplicates']} duplicates, "
                 f"{report['unreviewed']} rows without a label yet"
                 + (f", {report['drafts_ignored']} drafts ignored" if report.get("drafts_ignored") else ""))
    for w in report.get("warnings") or []:
        console.print(f"[yellow]warning[/]: {w}")
    for r in report["relabeled"]:
        stdout.print(f"  relabeled by {r['reviewer']}: {r['item_id']} {r['from']} -> {r['to']}")
    for c in report["conflicts"]:
        stdout.print(f"  [yellow]conflict[/]: {c['item_id']} {c['votes']}")
    for p in report["problems"]:
        stdout.print(f"  [red]skipped[/]: {p}")


@review_app.command("conflicts")
def conflicts_cmd(
    db: Path = typer.Argument(..., help="review store"),
    all_: bool = typer.Option(False, "--all", help="resolved ones too"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Items whose reviews disagree (with each other or with the seed label)."""
    with friendly_errors():
        with _open(db) as store:
            rows = store.conflicts(None if all_ else "open")
    if as_json:
        print_json(rows)
        return
    if not rows:
        stdout.print("no conflicts")
    for r in rows:
        stdout.print(f"{r['item_id']} [{r['status']}] {r['votes']}" + (f" -> {r['resolution']}" if r["resolution"] else ""))


@review_app.command("resolve")
def resolve_cmd(
    db: Path = typer.Argument(..., help="review store"),
    item_id: str = typer.Argument(..., help="item to settle"),
    label: str = typer.Option(..., help="harmful | unharmful"),
    reviewer: str = typer.Option(_default_reviewer(), help="who resolves it"),
    note: Optional[str] = typer.Option(None),
) -> None:
    """Settle a conflict with a final label (recorded as a resolution review)."""
    with friendly_errors():
        with _open(db) as store:
            out = store.resolve(item_id, label, reviewer, note)
    stdout.print(f"{item_id}: {out.label} ({out.provenance})")


@review_app.command("serve")
def serve_cmd(
    db: Path = typer.Argument(..., help="review store"),
    host: str = typer.Option("127.0.0.1", help="interface to bind (keep 127.0.0.1 unless behind auth)"),
    port: int = typer.Option(8765),
    reviewer: str = typer.Option(_default_reviewer(), help="default reviewer name shown in the page"),
) -> None:
    """Serve the review page for DB (FastAPI; needs the 'serve' extra)."""
    from guardmatch.review.server import serve

    with friendly_errors():
        if not db.is_file():
            raise FileNotFoundError(f"{db}: no review store here (create one with `guardmatch review route`)")
        console.print(f"review page for {db} on http://{host}:{port}/ (Ctrl-C to stop)")
        serve(db, host=host, port=port, reviewer=reviewer)


def retrain_cmd(
    db: Path = typer.Argument(..., help="review store"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="base run config (default: the one stored "
                                                                      "when the store was filled from a run)"),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", "-o", help="round directory "
                                                                              "(default: <db>-rounds/round-<n>)"),
    include_pseudo: bool = typer.Option(False, "--include-pseudo", help="also train on pseudo-labels as labels"),
    warm_start: bool = typer.Option(False, "--warm-start", help="start from the last round's model"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override any config key: optim.max_steps=100"),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads"),
) -> None:
    """Merge reviewed labels into the seed set and train the next round (recorded in the store)."""
    from guardmatch.config import TrainConfig, build_config
    from guardmatch.review.retrain import base_config, retrain

    with friendly_errors():
        with _open(db) as store:
            overrides = parse_assignments(set_)
            if threads:
                overrides["threads"] = threads
            cfg = build_config(TrainConfig, config, overrides) if config is not None else base_config(store, overrides)
            result = retrain(store, cfg, output_dir, include_pseudo=include_pseudo, warm_start=warm_start,
                             console=console)
    stdout.print(f"round {result.round_id}: {result.labels_used['total']} labels {result.labels_used['by_provenance']}"
                 f" -> {result.model_dir} ({result.model_version})")
    if result.evaluation is not None:
        stdout.print(result.evaluation.to_markdown(title=f"round {result.round_id}"))


def register(app: typer.Typer) -> None:
    app.add_typer(review_app, name="review")
    app.command("retrain")(retrain_cmd)
