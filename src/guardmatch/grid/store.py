"""The results store: a SQLite index of the grid's cells, backed by each cell's directory.

The directory is the truth: a finished cell holds ``cell.json`` (written last, atomically) next to
the run's own ``config.yaml``, ``split_manifest.json``, ``run.json`` and ``eval/``. The index
(``<grid out>/results.sqlite``) records status, config hash, metrics and timings of every cell
for reports and ``guardmatch grid --status``; :meth:`ResultsStore.sync` rebuilds it from the
directories, so a lost or stale index never loses a result.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator

CELL_FILE = "cell.json"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY,
    task TEXT, pool TEXT, kind TEXT, method TEXT, augmenter TEXT, budget TEXT, seed INTEGER,
    status TEXT NOT NULL,
    config_hash TEXT,
    path TEXT,
    started REAL, finished REAL, elapsed_s REAL, cpu_s REAL,
    metrics TEXT, timings TEXT, info TEXT, error TEXT
)
"""

STATUSES = ("pending", "running", "done", "failed", "skipped")


def read_cell_file(path: Path) -> dict[str, Any] | None:
    """``cell.json`` of a cell directory, or None (absent or torn)."""
    try:
        return json.loads((Path(path) / CELL_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_cell_file(path: Path, record: dict[str, Any]) -> None:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / (CELL_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    os.replace(tmp, path / CELL_FILE)


def eval_summary(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Per test set headline metrics from ``eval/evaluation.json`` (no sweep)."""
    data = json.loads((Path(run_dir) / "eval" / "evaluation.json").read_text())
    keep = ("n", "positives", "threshold", "f1", "precision", "recall", "auprc", "accuracy", "fpr", "ece",
            "tp", "fp", "fn", "tn")
    return {name: {k: r.get(k) for k in keep} for name, r in data["results"].items()}


class ResultsStore:
    """SQLite index of cells (one writer: the grid runner holds ``grid.lock``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.execute(_SCHEMA)
        self.db.commit()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "ResultsStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ writes
    def upsert(self, cell: dict[str, Any], **fields: Any) -> None:
        row = {**{k: cell[k] for k in ("key", "task", "pool", "kind", "method", "augmenter", "budget", "seed")},
               **fields}
        for k in ("metrics", "timings", "info"):
            if k in row and not isinstance(row[k], (str, type(None))):
                row[k] = json.dumps(row[k], default=str)
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        updates = ", ".join(f"{c}=excluded.{c}" for c in row if c != "key")
        self.db.execute(f"INSERT INTO cells ({cols}) VALUES ({marks}) ON CONFLICT(key) DO UPDATE SET {updates}",
                        list(row.values()))
        self.db.commit()

    def mark_running(self, cell: dict[str, Any], config_hash: str, path: Path) -> None:
        self.upsert(cell, status="running", config_hash=config_hash, path=str(path), started=time.time(),
                    finished=None, error=None)

    def mark_done(self, cell: dict[str, Any], record: dict[str, Any]) -> None:
        self.upsert(cell, status="done", config_hash=record["config_hash"], path=record["path"],
                    finished=record.get("finished"), elapsed_s=record.get("elapsed_s"), cpu_s=record.get("cpu_s"),
                    metrics=record.get("metrics"), timings=record.get("timings"), info=record.get("info"), error=None)

    def mark_failed(self, cell: dict[str, Any], error: str, status: str = "failed", **fields: Any) -> None:
        self.upsert(cell, status=status, error=error, finished=time.time(), **fields)

    def sync(self, cells: list[dict[str, Any]], paths: dict[str, Path]) -> int:
        """Record every finished cell directory not (or not correctly) indexed yet; returns how many."""
        fixed = 0
        for cell in cells:
            record = read_cell_file(paths[cell["key"]])
            if record is None or record.get("status") != "done":
                continue
            row = self.get(cell["key"])
            if row is None or row["status"] != "done" or row["config_hash"] != record["config_hash"]:
                self.mark_done(cell, record)
                fixed += 1
        return fixed

    # ------------------------------------------------------------------ reads
    def get(self, key: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM cells WHERE key = ?", (key,)).fetchone()
        return _decode(row) if row else None

    def rows(self, status: str | None = None) -> Iterator[dict[str, Any]]:
        query = "SELECT * FROM cells" + (" WHERE status = ?" if status else "") + " ORDER BY key"
        for row in self.db.execute(query, (status,) if status else ()):
            yield _decode(row)

    def counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.db.execute("SELECT status, COUNT(*) FROM cells GROUP BY status")}


def _decode(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    for k in ("metrics", "timings", "info"):
        if out.get(k):
            out[k] = json.loads(out[k])
    return out
