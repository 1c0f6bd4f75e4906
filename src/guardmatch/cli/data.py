"""``guardmatch data ...``: look at a dataset before training on it.

``data_app`` is the ``data`` sub-app; other modules may add commands to it (e.g. ``data shift``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from guardmatch.data.example import Task
from guardmatch.data.loaders import DEFAULT_MAX_TEXT_CHARS, LoadResult, dataset_formats
from guardmatch.data.suites import load_source
from guardmatch.errors import GuardmatchError

data_app = typer.Typer(name="data", help="Inspect datasets: rows, labels, skipped rows and problems.",
                       no_args_is_help=True)

_MAX_PROBLEMS_SHOWN = 20


def _mapping(pairs: list[str]) -> dict[str, str] | None:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise typer.BadParameter(f"{pair!r}: expected SOURCE_COLUMN=FIELD, e.g. text=prompt", param_hint="--map")
        src, dst = pair.split("=", 1)
        out[src.strip()] = dst.strip()
    return out or None


def _short(text: str | None, n: int = 120) -> str:
    if text is None:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _no_label_column(result: LoadResult) -> bool:
    """Nothing kept, and the file (or every row) has no ``label`` field at all: maybe an unlabeled file."""
    if result.format not in ("normalized", "generic") or result.report.kept:
        return False
    return any(p.field == "label" and p.message.startswith("missing column") for p in result.report.errors)


def _load_unlabeled_file(load, result: LoadResult) -> LoadResult | None:
    """``result`` read again without labels, if it is an unlabeled file (a valid ``predict`` input).

    That is: no row has a label field (a header without a ``label`` column, or no jsonl row with a
    ``label`` key). One error per row would be noise; rows that are bad for other reasons (empty
    prompt, duplicate id ...) are still reported. A file where some rows have labels is not one.
    """
    if not _no_label_column(result):
        return None
    again = load(require_label=False)
    if any(ex.label is not None for ex in again.examples) or any(p.field == "label" for p in again.report.errors):
        return None
    return again


def _print_rich(result: LoadResult, summary: dict, console: Console) -> None:
    console.rule(f"[bold]{summary['source']}")
    if summary.get("unlabeled_file"):
        console.print(f"unlabeled file: {summary['kept']:,} rows, no labels", markup=False, highlight=False)
    head = Table.grid(padding=(0, 2))
    head.add_row("format", summary["format"] or "?")
    head.add_row("task", summary["task"])
    head.add_row("read from", "\n".join(summary["origins"]))
    head.add_row("rows read", f"{summary['rows_read']:,}")
    head.add_row("kept", f"{summary['kept']:,}")
    head.add_row("labels", "none (unlabeled file)" if summary.get("unlabeled_file")
                 else ", ".join(f"{k} {v:,}" for k, v in summary["labels"].items()))
    head.add_row("errors / warnings", f"{summary['errors']} / {summary['warnings']}")
    console.print(head)
    if summary["skipped"]:
        table = Table(title="skipped rows", title_justify="left")
        table.add_column("reason")
        table.add_column("rows", justify="right")
        for reason, n in summary["skipped"].items():
            table.add_row(reason, f"{n:,}")
        console.print(table)
    problems = [p for p in result.report.problems if p.severity != "skipped"]
    if problems:
        table = Table(title=f"problems ({len(problems):,})", title_justify="left")
        for col in ("severity", "file", "row", "field", "message"):
            table.add_column(col, overflow="fold")
        for p in problems[:_MAX_PROBLEMS_SHOWN]:
            style = "red" if p.severity == "error" else "yellow"
            table.add_row(f"[{style}]{p.severity}", Path(p.file).name, "" if p.row is None else str(p.row), p.field or "",
                          p.message)
        console.print(table)
        if len(problems) > _MAX_PROBLEMS_SHOWN:
            console.print(f"... and {len(problems) - _MAX_PROBLEMS_SHOWN:,} more (use --json for all)")
    if summary["examples"]:
        table = Table(title="example rows", title_justify="left")
        for col in ("id", "label", "prompt", "response"):
            table.add_column(col, overflow="fold")
        for ex in result.examples[: len(summary["examples"])]:
            table.add_row(ex.id, ex.label_name or "-", _short(ex.prompt), _short(ex.response))
        console.print(table)


@data_app.command("inspect")
def inspect(
    target: str = typer.Argument(..., help="A file (jsonl/csv/parquet[.gz]) or a dataset name (e.g. wildguardtest)."),
    format: Optional[str] = typer.Option(
        None, "--format", "-f", help=f"One of {', '.join(dataset_formats())} (default: detect)."),
    task: Task = typer.Option(Task.PROMPT, "--task", "-t", help="Which label to read."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout (nothing else)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where named datasets are looked for."),
    rows: int = typer.Option(3, "--rows", "-n", min=0, help="How many example rows to show."),
    map_: list[str] = typer.Option([], "--map", help="Column mapping SOURCE=FIELD (repeatable), e.g. text=prompt."),
    unlabeled: bool = typer.Option(False, "--unlabeled", help=(
        "Keep rows with null labels (unlabeled traffic). A file with no label field at all (e.g. id/prompt "
        "rows for `predict`) is recognised without it.")),
    max_text_chars: int = typer.Option(DEFAULT_MAX_TEXT_CHARS, "--max-text-chars", help="Longer texts are errors (0: no limit)."),
    hub: bool = typer.Option(True, "--hub/--no-hub", help="Fall back to the Hugging Face Hub for named datasets."),
) -> None:
    """Read a file or named dataset and report rows, labels, skipped rows and problems.

    Exit code 0 when there are no errors, 1 when there are (the report is still printed). A file
    with no label field at all is reported once as an unlabeled file, not as one error per row.
    """
    if format is not None and format not in dataset_formats():
        raise typer.BadParameter(f"{format!r} is not one of {', '.join(dataset_formats())}", param_hint="--format")
    mapping = _mapping(map_)

    def load(require_label: bool) -> LoadResult:
        return load_source(target, task, format=format, column_mapping=mapping, data_dir=data_dir,
                           allow_hub=hub, errors="skip", require_label=require_label,
                           max_text_chars=max_text_chars or None)

    try:
        result = load(require_label=not unlabeled)
        unlabeled_file = None if unlabeled else _load_unlabeled_file(load, result)
    except (GuardmatchError, FileNotFoundError, PermissionError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if unlabeled_file is not None:
        result = unlabeled_file
    summary = result.summary(rows=rows)
    summary["unlabeled_file"] = bool(result.examples) and all(ex.label is None for ex in result.examples)
    if json_out:
        sys.stdout.write(json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
    else:
        _print_rich(result, summary, Console())
    raise typer.Exit(1 if summary["errors"] else 0)


def register(app: typer.Typer) -> None:
    """Add the ``data`` sub-app to the main CLI."""
    app.add_typer(data_app, name="data")
