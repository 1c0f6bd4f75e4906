"""``guardmatch augment``: generate cached strong views; ``guardmatch views``: look at caches."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.table import Table

from guardmatch.cli.common import AugmenterChoice, LLMBackendChoice, console, friendly_errors, parse_assignments, stdout
from guardmatch.data.example import Task

views_app = typer.Typer(name="views", help="Inspect augmentation caches (made by `guardmatch augment`).",
                        no_args_is_help=True)


def augment_command(
    augmenter: AugmenterChoice = typer.Option("eda", "--augmenter", "-a", help="which augmenter"),
    input: str = typer.Option(..., "--input", "-i", help="file (jsonl/csv/parquet) or dataset name, e.g. wildguardtrain"),
    task: Task = typer.Option(Task.PROMPT, "--task", help="prompt: rewrite prompts; response: rewrite responses"),
    views: int = typer.Option(1, "--views", "-k", min=1, help="views per text"),
    sample: Optional[int] = typer.Option(None, "--sample", min=1, help="augment a seeded random subset of N texts"),
    sample_seed: int = typer.Option(0, "--sample-seed", help="seed of --sample"),
    cache_dir: Optional[str] = typer.Option(None, "--cache-dir", envvar="GUARDMATCH_CACHE_DIR",
                                            help="cache root (default ~/.cache/guardmatch)"),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="local data root for dataset names"),
    backend: Optional[LLMBackendChoice] = typer.Option(None, "--backend", help="LLM augmenters: the generation backend"),
    model: Optional[str] = typer.Option(None, "--model", "-m",
                                        help="LLM: alias (qwen1.5b, smollm2), path, Hub id or server model name"),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="openai backend: server root incl. /v1"),
    pivots: Optional[list[str]] = typer.Option(None, "--pivot", help="backtranslation pivot language (repeatable)"),
    prompt_file: Optional[str] = typer.Option(None, "--prompt", help="llm-rewrite: template name or file"),
    use_labels: bool = typer.Option(False, "--use-labels",
                                    help="llm-rewrite: label-specific prompts for labeled texts (never hidden labels)"),
    intent: Optional[str] = typer.Option(None, "--intent", help="intent check: none | embedding | classifier | either | both"),
    min_similarity: Optional[float] = typer.Option(None, "--min-similarity", help="embedding-similarity floor"),
    classifier: Optional[str] = typer.Option(None, "--classifier", help="saved GuardClassifier for the intent check"),
    no_filters: bool = typer.Option(False, "--no-filters", help="accept every non-failed view"),
    sets: Optional[list[str]] = typer.Option(
        None, "--set", help="augmenter config KEY=VALUE (e.g. backend.threads=1 --set backend.parallel=2)"),
    filter_sets: Optional[list[str]] = typer.Option(None, "--filter", help="filter config KEY=VALUE"),
    config: Optional[str] = typer.Option(None, "--config", help="YAML with AugmentSettings fields"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1),
    max_attempts: int = typer.Option(2, "--max-attempts", min=1, help="tries per view slot before giving up"),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", help="stop (resumably) after this many seconds"),
    no_progress: bool = typer.Option(False, "--no-progress"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON on stdout"),
) -> None:
    """Generate K strong views per text into the on-disk cache (resumable; rerun to continue)."""
    from guardmatch.augment.backends.openai_compat import ServerError
    from guardmatch.augment.cache import CacheLockedError
    from guardmatch.augment.pipeline import AugmentSettings, run_augment
    from guardmatch.config import build_config, load_yaml, set_dotted

    with friendly_errors():
        raw = load_yaml(config) if config else {}
        raw.update({"augmenter": augmenter, "input": input, "task": task, "views": views, "sample": sample,
                    "sample_seed": sample_seed, "cache_dir": cache_dir, "data_dir": data_dir,
                    "batch_size": batch_size, "max_attempts": max_attempts, "time_limit_s": time_limit,
                    "classifier": classifier})
        aug_cfg = dict(raw.get("augmenter_config") or {})
        if backend:
            set_dotted(aug_cfg, "backend.kind", backend)
        if model:
            set_dotted(aug_cfg, "backend.model", model)
        if base_url:
            set_dotted(aug_cfg, "backend.base_url", base_url)
        if pivots:
            aug_cfg["pivots"] = list(pivots)
        if prompt_file:
            aug_cfg["prompt" if task is Task.PROMPT else "response_prompt"] = prompt_file
        if use_labels:
            aug_cfg["use_labels"] = True
        for key, value in parse_assignments(sets).items():
            set_dotted(aug_cfg, key, value)
        raw["augmenter_config"] = aug_cfg
        filt = dict(raw.get("filters") or {})
        if no_filters:
            filt["enabled"] = False
        if intent:
            set_dotted(filt, "intent.mode", intent)
        if min_similarity is not None:
            set_dotted(filt, "intent.min_similarity", min_similarity)
        if classifier and not intent:
            set_dotted(filt, "intent.mode", "classifier")
        if classifier:
            set_dotted(filt, "intent.classifier", classifier)
        for key, value in parse_assignments(filter_sets, "--filter").items():
            set_dotted(filt, key, value)
        raw["filters"] = filt
        settings = build_config(AugmentSettings, data=raw, source=config or "command-line options")
        try:
            report = run_augment(settings, progress=not no_progress, console=console)
        except (ImportError, CacheLockedError, ServerError) as exc:
            console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2) from None
    summary = report.summary()
    if as_json:
        stdout.print_json(json.dumps(summary))
    else:
        _print_report(summary)
    if not report.complete:
        console.print(f"[yellow]stopped before the end: rerun the same command to continue[/]\n  {settings.command()}")


def _print_report(s: dict) -> None:
    table = Table(title=f"{s['augmenter']} ({s['task']}): {s['cache_dir']}", show_header=False)
    table.add_row("texts / views per text", f"{s['texts']:,} / {s['views_per_text']}")
    table.add_row("slots already done", f"{s['slots_done_before']:,} of {s['slots']:,}")
    table.add_row("attempts this run", f"{s['attempts']:,}")
    table.add_row("accepted this run", f"{s['accepted']:,}")
    table.add_row("rejected this run", ", ".join(f"{k} {v}" for k, v in sorted(s["rejected"].items())) or "0")
    table.add_row("time", f"{s['elapsed_s']:.1f} s (generate {s['generate_s']:.1f} s, filters {s['filter_s']:.1f} s)")
    table.add_row("throughput", f"{s['views_per_s']:.3f} accepted views/s, {s['attempts_per_s']:.3f} attempts/s")
    for task, c in s["cache_counts"].items():
        table.add_row(f"cache [{task}]", f"{c['texts']:,} texts, {c['accepted_views']:,} views, rejected {c['rejected']}")
    console.print(table)


@views_app.command("list")
def list_command(cache_dir: Optional[str] = typer.Option(None, "--cache-dir", envvar="GUARDMATCH_CACHE_DIR"),
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """Every view cache under the cache root, with its counts."""
    from guardmatch.augment.cache import list_caches

    with friendly_errors():
        caches = list_caches(cache_dir)
    if as_json:
        stdout.print_json(json.dumps(caches))
        return
    table = Table("cache", "augmenter", "task", "texts", "views", "rejected", "updated")
    for c in caches:
        for task, n in (c["counts"] or {"-": {}}).items():
            table.add_row(c["dir"], c["augmenter"], task, str(n.get("texts", "")), str(n.get("accepted_views", "")),
                          json.dumps(n.get("rejected", {})), c["updated"] or "")
    console.print(table)


@views_app.command("show")
def show_command(cache: str = typer.Argument(..., help="cache directory, or augmenter name under the cache root"),
                 cache_dir: Optional[str] = typer.Option(None, "--cache-dir", envvar="GUARDMATCH_CACHE_DIR"),
                 task: Task = typer.Option(Task.PROMPT, "--task"),
                 n: int = typer.Option(5, "-n", help="records to show"),
                 status: Optional[str] = typer.Option(None, "--status", help="accepted | rejected"),
                 reason: Optional[str] = typer.Option(None, "--reason", help="only this rejection reason")) -> None:
    """Print cached views (text, status, reason, metadata)."""
    from guardmatch.augment.cache import ViewCache

    with friendly_errors():
        vc = ViewCache.open(cache, cache_root=cache_dir)
    shown = 0
    for rec in vc.iter_records(task):
        if status and rec.status != status or reason and rec.reason != reason:
            continue
        text = rec.prompt if task is Task.PROMPT else rec.response
        console.rule(f"{rec.source_id} view {rec.view} attempt {rec.attempt}: {rec.status} {rec.reason or ''}")
        console.print(text or "", markup=False, highlight=False)
        console.print({k: v for k, v in rec.meta.items() if k != "pivot_text"})
        shown += 1
        if shown >= n:
            break


@views_app.command("pack")
def pack_command(cache: str = typer.Argument(..., help="cache directory, or augmenter name (cache root, then views/)"),
                 cache_dir: Optional[str] = typer.Option(None, "--cache-dir", envvar="GUARDMATCH_CACHE_DIR"),
                 keep_shards: bool = typer.Option(False, "--keep-shards", help="keep the JSONL shards after packing")) -> None:
    """Pack a cache into one reproducible records.jsonl.gz (what the repository's views/ folder ships)."""
    from guardmatch.augment.cache import ViewCache

    with friendly_errors():
        vc = ViewCache.open(cache, cache_root=cache_dir)
        out = vc.pack(prune=not keep_shards)
    console.print(f"{vc.path / 'records.jsonl.gz'}: {out['records']:,} records, {out['bytes'] / 1e6:.2f} MB, "
                  f"{out['shards_pruned']} shard(s) pruned")


def register(app: typer.Typer) -> None:
    app.command("augment")(augment_command)
    app.add_typer(views_app)
