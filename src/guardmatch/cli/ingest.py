"""``guardmatch ingest`` / ``purge`` / ``audit`` / ``keygen``: logs in, harmful text handled safely.

Thin layer over :mod:`guardmatch.ingest.pipeline` and :mod:`guardmatch.storage`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from guardmatch.cli.common import console, print_json, stdout


def _summary(report) -> None:
    m = report.manifest
    c = m["counts"]
    head = Table.grid(padding=(0, 2))
    head.add_row("pool", f"{report.out}  ({'resumed' if report.resumed else 'new'}, id {m['pool_id'][:12]})")
    head.add_row("encrypted", "yes (key " + m["encryption"]["key_id"] + ")" if m["encryption"]["enabled"] else "no")
    head.add_row("records read", f"{c['records']:,}")
    head.add_row("examples kept", f"{c['kept']:,}  " + ", ".join(f"{k} {v:,}" for k, v in c["kept_by_kind"].items()))
    head.add_row("duplicates", ", ".join(f"{k} {v:,}" for k, v in c["dedup"].items()) or "0")
    head.add_row("PII redacted", ", ".join(f"{k} {v:,}" for k, v in sorted(c["redactions"].items())) or "none")
    head.add_row("errors", f"{c['errors']:,}  (all in {Path(str(report.out)).name.removesuffix('.jsonl')}.errors.jsonl)")
    head.add_row("time", f"{report.seconds:.1f} s ({c['records'] / max(report.seconds, 1e-9):,.0f} records/s)")
    console.print(head)
    if c["skipped"]:
        t = Table(title="skipped", title_justify="left")
        t.add_column("reason")
        t.add_column("n", justify="right")
        for k, v in sorted(c["skipped"].items(), key=lambda kv: -kv[1]):
            t.add_row(k, f"{v:,}")
        console.print(t)
    for p in report.problems[:20]:
        console.print(f"[yellow]{p}[/]")
    if len(report.problems) > 20 or c["errors"] > len(report.problems[:20]):
        console.print(f"... {c['errors'] - min(20, len(report.problems)):,} more problems in the error log")


def ingest_cmd(
    logs: list[Path] = typer.Argument(..., help="Chat logs: OpenAI-style messages JSONL, or jsonl/csv/parquet (.gz ok)."),
    out: Path = typer.Option(..., "--out", "-o", help="Pool to write (pool.jsonl); resumed or extended if it exists."),
    config: Optional[Path] = typer.Option(None, "--config", help="IngestConfig YAML (flags below override it)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="jsonl, csv or parquet (default: from the file name)."),
    layout: Optional[str] = typer.Option(None, "--layout", help="auto, messages (chat) or flat (prompt/response columns)."),
    prompt_col: Optional[str] = typer.Option(None, "--prompt-col", help="Column with the prompt (flat layout)."),
    response_col: Optional[str] = typer.Option(None, "--response-col", help="Column with the response (flat layout)."),
    id_col: Optional[str] = typer.Option(None, "--id-col", help="Column with the record/conversation id."),
    segment: list[str] = typer.Option([], "--segment", help="Metadata field to keep for slicing (repeat; default: all)."),
    drop: list[str] = typer.Option([], "--drop", help="Metadata field never stored (repeat), e.g. --drop client_ip."),
    pseudonymize: list[str] = typer.Option([], "--pseudonymize",
                                           help="Metadata field replaced by a per-pool keyed hash (repeat), e.g. user_id."),
    lang: list[str] = typer.Option([], "--lang", help="Keep only these languages (ISO 639-1, repeat), e.g. --lang en."),
    min_chars: Optional[int] = typer.Option(None, "--min-chars"),
    max_chars: Optional[int] = typer.Option(None, "--max-chars"),
    context_turns: Optional[int] = typer.Option(None, "--context-turns", help="Earlier chat messages shown with a turn."),
    near_threshold: Optional[float] = typer.Option(None, "--near-threshold", help="MinHash Jaccard threshold."),
    no_dedup: bool = typer.Option(False, "--no-dedup", help="Keep duplicates."),
    names: bool = typer.Option(False, "--names", help="Also redact person names (spaCy NER; ~100x slower)."),
    no_pii: bool = typer.Option(False, "--no-pii", help="Store text unredacted (not recommended)."),
    encrypt: Optional[bool] = typer.Option(None, "--encrypt/--no-encrypt",
                                           help="Default: encrypt when GUARDMATCH_ENCRYPTION_KEY is set."),
    max_line_bytes: Optional[int] = typer.Option(None, "--max-line-bytes", help="Longer lines are skipped and reported."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start the pool over instead of resuming it."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Turn chat logs into an unlabeled, PII-redacted, de-duplicated pool (streamed, resumable)."""
    from guardmatch.cli.common import friendly_errors
    from guardmatch.config import build_config
    from guardmatch.ingest.config import IngestConfig
    from guardmatch.ingest.pipeline import ingest

    with friendly_errors():
        overrides = {  # None: the flag was not given
            "format": fmt, "encrypt": encrypt, "max_line_bytes": max_line_bytes,
            "columns.layout": layout, "columns.prompt": prompt_col, "columns.response": response_col,
            "columns.id": id_col, "columns.segments": segment or None, "columns.context_turns": context_turns,
            "columns.drop": drop or None, "columns.pseudonymize": pseudonymize or None,
            "filters.languages": lang or None, "filters.min_chars": min_chars, "filters.max_chars": max_chars,
            "dedup.threshold": near_threshold,
            "dedup.exact": False if no_dedup else None, "dedup.near": False if no_dedup else None,
            "pii.names": True if names else None, "pii.enabled": False if no_pii else None,
        }
        cfg = build_config(IngestConfig, config, overrides)
        report = ingest(logs, out, cfg, overwrite=overwrite, progress=not quiet)
    if as_json:
        print_json(report.manifest)
    else:
        _summary(report)


def purge_cmd(
    pool: Path = typer.Argument(..., help="The pool (or any registered source file) to remove."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed; remove nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Delete a pool and everything derived from it (caches, embeddings, predictions, review DBs)."""
    from guardmatch.storage.lineage import purge

    preview = purge(pool, dry_run=True)
    if not preview.removed and not preview.filtered:
        console.print(f"[bold red]error:[/] nothing to purge for {pool} (no such pool and no registered derivatives)")
        raise typer.Exit(2)
    if not dry_run and not yes:
        for p in preview.removed:
            console.print(f"  {p}")
        for p, n in preview.filtered.items():
            console.print(f"  {n:,} records in shared {p}")
        typer.confirm(f"Delete these {len(preview.removed)} paths ({preview.bytes_freed:,} bytes)?", abort=True)
    report = preview if dry_run else purge(pool)
    if as_json:
        print_json(report.to_dict())
        return
    verb = "would remove" if dry_run else "removed"
    for p in report.removed:
        stdout.print(f"{verb} {p}")
    for p in report.missing:
        stdout.print(f"[yellow]already gone[/] {p}")
    for p, n in report.filtered.items():
        stdout.print(f"{'would keep' if dry_run else 'kept'} shared {p}: {n:,} records of this pool's texts "
                     f"{verb.split()[-1]}")
    for p, why in report.kept_shared.items():
        stdout.print(f"[yellow]kept shared[/] {p}: {why}")
    stdout.print(f"{verb} {len(report.removed)} paths, {report.bytes_freed:,} bytes"
                 + ("" if dry_run else "; recorded in the audit log"))


def audit_cmd(
    last: int = typer.Option(20, "--last", "-n", help="Show the last N records (0: all)."),
    action: Optional[str] = typer.Option(None, "--action", help="Only this action (export, ingest, purge, ...)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show the audit log: who exported, ingested or purged what, when, how many rows."""
    from guardmatch.storage.audit import read_audit_log
    from guardmatch.storage.files import cache_root

    records = [r for r in read_audit_log() if action is None or r.get("action") == action]
    if last:
        records = records[-last:]
    if as_json:
        print_json(records)
        return
    t = Table(title=f"audit log ({cache_root() / 'audit.jsonl'})", title_justify="left")
    for col in ("when", "who", "action", "rows", "what"):
        t.add_column(col, justify="right" if col == "rows" else "left", overflow="fold")
    for r in records:
        t.add_row(r.get("when", ""), r.get("who", ""), r.get("action", ""),
                  "" if r.get("rows") is None else f"{r['rows']:,}", r.get("what", ""))
    stdout.print(t)


def keygen_cmd() -> None:
    """Print a new key for GUARDMATCH_ENCRYPTION_KEY (keep it in a secret store, not in the repo)."""
    from guardmatch.storage.crypto import generate_key

    stdout.print(generate_key(), highlight=False)


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest_cmd)
    app.command("purge")(purge_cmd)
    app.command("audit")(audit_cmd)
    app.command("keygen")(keygen_cmd)

