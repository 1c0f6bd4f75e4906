"""Data problems reported with file, row and field, never as a bare crash."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from guardmatch.errors import GuardmatchError

Severity = Literal["error", "warning", "skipped"]
_SURROGATES = re.compile("[\ud800-\udfff]")  # lone surrogates; \udc80-\udcff is also surrogateescape


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one row (``row`` is 1-based as an editor shows it; None = whole file)."""

    file: str
    row: int | None
    field: str | None
    message: str
    severity: Severity = "error"

    def __post_init__(self) -> None:  # a bad file or column name must not make the report unwritable
        for name in ("file", "field", "message"):
            value = getattr(self, name)
            if isinstance(value, str) and _SURROGATES.search(value):
                object.__setattr__(self, name, value.encode("utf-8", "backslashreplace").decode("utf-8"))

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", row {self.row}"
        if self.field:
            where += f", field {self.field!r}"
        return f"{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DataError(GuardmatchError, ValueError):
    """Raised when data has errors; carries every :class:`Problem` found, not just the first."""

    def __init__(self, problems: list[Problem] | str, context: str = ""):
        head = f"{context}: " if context else ""
        if isinstance(problems, str):  # one problem that belongs to no row: the message itself
            self.problems: list[Problem] = []
            super().__init__(f"{head}{problems}")
            return
        self.problems = list(problems)
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


# --------------------------------------------------------------------------------------------
# Text that cannot be encoded (the one check every reader and the server use)
# --------------------------------------------------------------------------------------------


def unreadable_text(text: str) -> str | None:
    """Why ``text`` is not valid Unicode text (a lone surrogate, an undecodable byte), or None.

    Such a string comes from a JSON escape like ``"\\ud800"`` or from bytes that are not UTF-8
    (decoded with ``surrogateescape``); it cannot be encoded, tokenized or written back. The
    reason names the position, never the text.
    """
    m = _SURROGATES.search(text)
    if m is None:
        return None
    code = ord(m.group())
    if 0xDC80 <= code <= 0xDCFF:
        kind = f"an undecodable byte (0x{code - 0xDC00:02x}, not valid UTF-8) or lone surrogate U+{code:04X}"
    else:
        kind = f"a lone surrogate U+{code:04X}"
    return f"not valid Unicode text: {kind} at character {m.start()}"


def unreadable_field(value: Any, path: str = "") -> tuple[str, str] | None:
    """The first string in ``value`` (nested dicts/lists, keys too) that :func:`unreadable_text`
    rejects, as ``(field path, reason)`` (``messages[2].content``; a bad key is named backslash-escaped),
    or None."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, v = stack.pop()
        if isinstance(v, str):
            reason = unreadable_text(v)
            if reason is not None:
                return where or "value", reason
        elif isinstance(v, dict):
            items = []
            for k, sub in v.items():
                key = str(k)
                reason = unreadable_text(key)
                if reason is not None:  # the path names the key, escaped (it must print)
                    shown = key.encode("utf-8", "backslashreplace").decode("utf-8")
                    return (f"{where}.{shown}" if where else shown), f"the field name is {reason}"
                items.append((f"{where}.{key}" if where else key, sub))
            stack.extend(reversed(items))
        elif isinstance(v, (list, tuple)):
            stack.extend(reversed([(f"{where}[{i}]", sub) for i, sub in enumerate(v)]))
    return None
