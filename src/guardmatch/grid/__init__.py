"""The experiment grid: methods x augmenters x budgets x seeds x tasks (x pools), with baselines.

Python API::

    from guardmatch.grid import load_grid_config, GridRunner, build_report
    grid = load_grid_config("configs/paper_cpu.yaml")
    GridRunner(grid).run()          # resumable; finished cells are skipped
    build_report(grid)              # report.md, cells.csv, summary.csv, results.json, plots/

CLI: ``guardmatch grid --config configs/paper_cpu.yaml [--mode frozen] [--only task=prompt] [--status]``.

Modules: ``config`` (pydantic schema), ``cells`` (expansion, directories, config hashes, widened
pools), ``store`` (SQLite index + per-cell ``cell.json``), ``runner``, ``baselines`` (TF-IDF + LR,
SetFit), ``report`` (tables, goal check, CSV/JSON), ``plots`` (matplotlib).
"""

from guardmatch.grid.cells import Cell, cell_config, config_hash, expand
from guardmatch.grid.config import GridConfig, load_grid_config
from guardmatch.grid.report import build_report
from guardmatch.grid.runner import GridLockedError, GridRunner, StaleCellsError, parse_only
from guardmatch.grid.store import ResultsStore

__all__ = ["Cell", "GridConfig", "GridLockedError", "GridRunner", "ResultsStore", "StaleCellsError", "build_report",
           "cell_config", "config_hash", "expand", "load_grid_config", "parse_only"]
