"""``guardmatch grid``: run (or resume) an experiment grid and write its report."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Optional

import typer

from guardmatch.cli.common import console, friendly_errors, parse_assignments, print_json, stdout


def grid(
    config: Path = typer.Option(..., "--config", "-c", help="grid YAML (e.g. configs/paper_cpu.yaml)"),
    mode: Optional[str] = typer.Option(
        None, help="full | top_layers | frozen: override base.mode (the output dir gets a -MODE suffix)"),
    only: Optional[list[str]] = typer.Option(
        None, "--only", help="run a subset: AXIS=V1,V2 (task, pool, method, augmenter, baseline, kind, budget, seed, arm)"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="any grid key, dotted: base.optim.max_steps=50"),
    status: bool = typer.Option(False, "--status", help="show the state of every cell and exit"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list the cells that would run and exit"),
    report_only: bool = typer.Option(False, "--report-only", help="only (re)write the report from finished cells"),
    report_dir: Optional[Path] = typer.Option(None, help="where the report goes (default: <output_dir>/report)"),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="write PNG plots with the report"),
    rerun_changed: bool = typer.Option(False, "--rerun-changed", help="discard and rerun cells whose config changed"),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="stop at the first failed cell"),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads"),
    quiet: bool = typer.Option(False, "--quiet", help="no per-step progress bars"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Run methods x augmenters x budgets x seeds x tasks (and baselines); resumable; writes the report.

    Finished cells are skipped, an interrupted cell resumes from its checkpoint, a cell whose
    views are missing is skipped with the command that generates them. The report (markdown
    tables in the paper's layout, CSV/JSON, plots) is rewritten at the end of every run.
    """
    from guardmatch.grid import GridRunner, build_report, load_grid_config, parse_only

    with friendly_errors():
        overrides = parse_assignments(set_)
        if mode:
            if mode not in ("full", "top_layers", "frozen"):
                raise typer.BadParameter(f"{mode!r}: expected full, top_layers or frozen", param_hint="--mode")
            overrides["base.mode"] = mode
        grid_cfg = load_grid_config(config, overrides)
        if mode and "output_dir" not in overrides:
            grid_cfg = grid_cfg.model_copy(update={"output_dir": f"{grid_cfg.output_dir.rstrip('/')}-{mode}"})
        runner = GridRunner(grid_cfg, only=parse_only(only), console=console, rerun_changed=rerun_changed,
                            fail_fast=fail_fast, threads=threads, progress=not quiet)
        if status or dry_run:
            plans = runner.status()
            if as_json:
                print_json([{**p.cell.to_dict(), "state": p.state, "path": str(p.path), "note": p.note} for p in plans])
                return
            counts = Counter((p.cell.task.value, p.state) for p in plans)
            for (task, state), n in sorted(counts.items()):
                stdout.print(f"{task:9s} {state:8s} {n}")
            for p in plans:
                if dry_run and p.state != "done" or p.state in ("failed", "skipped", "stale"):
                    note = f"  ({p.note.splitlines()[0]})" if p.note else ""
                    stdout.print(f"  {p.state:8s} {p.cell.key}{note}", markup=False, soft_wrap=True)
            est = runner.estimate(plans)
            if est["remaining_s"] is not None:
                stdout.print(f"estimated remaining: {est['remaining_s'] / 3600:.1f} h for {est['remaining_cells']} "
                             f"cell(s), from {est['finished_cells']} finished cell(s)"
                             + (f"; {est['unlike_cells']} remaining cell(s) timed from cells of another kind (a lower bound "
                                "where SSL cells are timed from supervised ones)" if est["unlike_cells"] else "")
                             + (f"; {est['waiting_for_views']} skipped cell(s) wait for views"
                                if est["waiting_for_views"] else ""), soft_wrap=True)
            return
        if not report_only:
            summary = runner.run()
            if as_json:
                print_json(summary.to_dict())
            else:
                console.print(f"ran {len(summary.ran)} cell(s) in {summary.elapsed_s / 60:.1f} min; "
                              f"{len(summary.skipped_done)} already done; {len(summary.skipped_views)} skipped "
                              f"(missing views); {len(summary.failed)} failed")
                for key, why in summary.failed.items():
                    console.print(f"  [red]failed[/] {key}: {why}")
        report = build_report(grid_cfg, report_dir, plots=plots)
    if not as_json:
        sys.stdout.write(report["markdown"] + "\n")
    console.print(f"report: {report['dir']}/report.md ({report['cells_done']}/{report['cells_total']} cells)")


def register(app: typer.Typer) -> None:
    app.command("grid")(grid)
