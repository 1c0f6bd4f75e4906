"""Data problems reported with file, row and field, never as a bare crash."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning", "skipped"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one row (``row`` is 1-based as an editor shows it; None = whole file)."""

    file: str
    row: int | None
    field: str | None
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", row {self.row}"
        if self.field:
            where += f", field {self.field!r}"
        return f"{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DataError(ValueError):
    """Raised when data has errors; carries every :class:`Problem` found, not just the first."""

    def __init__(self, problems: list[Problem], context: str = ""):
        self.problems = list(problems)
        head = f"{context}: " if context else ""
        shown = "\n  ".join(str(p) for p in self.problems[:20])
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(f"{head}{len(self.problems)} data problem(s):\n  {shown}{more}")


@dataclass
class LoadReport:
    """What happened while reading one source: rows read, kept, skipped (by reason) and problems."""

    source: str
    rows_read: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    def add(self, problem: Problem) -> None:
        self.problems.append(problem)
        if problem.severity == "skipped":
            self.skipped[problem.message.split(":")[0]] += 1

    def merge(self, other: "LoadReport") -> None:
        self.rows_read += other.rows_read
        self.kept += other.kept
        self.skipped.update(other.skipped)
        self.problems.extend(other.problems)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows_read": self.rows_read,
            "kept": self.kept,
            "skipped": dict(self.skipped),
            "problems": [p.to_dict() for p in self.problems if p.severity != "skipped"],
        }
