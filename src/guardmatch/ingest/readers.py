"""Streaming readers for log files (JSONL, CSV, Parquet; ``.gz`` for the text formats).

Each reader yields :class:`RawRecord` items one at a time, in bounded memory, with the position
to resume from after that record (a byte offset in the uncompressed stream for JSONL/CSV, a row
index for Parquet). Bad input never stops a file: a malformed line, a non-UTF-8 line or a line
longer than ``max_line_bytes`` becomes a record carrying a :class:`Problem` (file + line) and
reading goes on. An over-long line is skipped in 1 MiB chunks, never held in memory whole.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Literal

from guardmatch.data.validation import Problem, unreadable_field, unreadable_text

Format = Literal["jsonl", "csv", "parquet"]
_SKIP_CHUNK = 1 << 20


@dataclass
class RawRecord:
    """One record (``data``) or one problem at ``line`` of ``file``; ``end`` is the resume position."""

    file: str
    line: int
    end: int
    data: dict[str, Any] | None = None
    problem: Problem | None = None
    progress: int = 0  # bytes of the (possibly compressed) file consumed, for progress bars
    end_line: int | None = None  # last physical line consumed (CSV records may span lines)

    @property
    def resume_line(self) -> int:
        return self.line if self.end_line is None else self.end_line


def detect_format(path: str | os.PathLike) -> Format:
    """The format from the file name: ``.jsonl/.json/.ndjson[.gz]``, ``.csv/.tsv[.gz]``, ``.parquet``."""
    name = Path(path).name.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith((".csv", ".tsv")):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    raise ValueError(f"{path}: cannot tell the format from the name; pass format= (jsonl, csv or parquet)")


class _Source:
    """A binary stream over the file, decompressed if ``.gz``, and the raw position for progress."""

    def __init__(self, path: Path):
        self.raw = open(path, "rb")
        self.fh: BinaryIO = gzip.GzipFile(fileobj=self.raw) if path.name.lower().endswith(".gz") else self.raw

    def progress(self) -> int:
        return self.raw.tell()

    def close(self) -> None:
        if self.fh is not self.raw:
            self.fh.close()
        self.raw.close()


class UnreadableRestError(Exception):
    """The rest of a file cannot be read (truncated or corrupt compression, I/O error)."""


def _lines(src: _Source, start: int, max_line_bytes: int) -> Iterator[tuple[bytes | None, int]]:
    """``(line bytes or None if over-long, bytes consumed)`` from offset ``start``."""
    try:
        yield from _raw_lines(src, start, max_line_bytes)
    except (EOFError, OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise UnreadableRestError(f"{type(exc).__name__}: {exc}") from exc


def _raw_lines(src: _Source, start: int, max_line_bytes: int) -> Iterator[tuple[bytes | None, int]]:
    if start:
        src.fh.seek(start)
    while True:
        chunk = src.fh.readline(max_line_bytes + 1)
        if not chunk:
            return
        if len(chunk) > max_line_bytes and not chunk.endswith(b"\n"):
            consumed = len(chunk)
            del chunk
            while True:  # skip the rest of the line without keeping it
                part = src.fh.readline(_SKIP_CHUNK)
                consumed += len(part)
                if not part or part.endswith(b"\n"):
                    break
            yield None, consumed
        else:
            yield chunk, len(chunk)


def _too_long(file: str, line: int, n: int, limit: int) -> Problem:
    return Problem(file, line, None, f"line too long: {n:,} bytes > max_line_bytes {limit:,}; skipped")


def read_jsonl(path: str | os.PathLike, start: int = 0, start_line: int = 0,
               max_line_bytes: int = 16 << 20) -> Iterator[RawRecord]:
    """JSON objects, one a line; blank lines are ignored."""
    path = Path(path)
    file = str(path)
    src = _Source(path)
    last_end, last_line = start, start_line
    try:
        for rec in _jsonl_records(src, file, start, start_line, max_line_bytes):
            last_end, last_line = rec.end, rec.line
            yield rec
    except UnreadableRestError as exc:
        yield RawRecord(file, last_line + 1, last_end, progress=src.progress(), problem=_unreadable(file, last_line + 1, exc))
    finally:
        src.close()


def _unreadable(file: str, line: int, exc: Exception) -> Problem:
    return Problem(file, line, None, f"file unreadable from here on (truncated or corrupt?): {exc}; rest of file skipped")


def _jsonl_records(src: _Source, file: str, start: int, line: int, max_line_bytes: int) -> Iterator[RawRecord]:
    pos = start
    for chunk, n in _lines(src, start, max_line_bytes):
        pos += n
        line += 1
        if chunk is None:
            yield RawRecord(file, line, pos, problem=_too_long(file, line, n, max_line_bytes), progress=src.progress())
            continue
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield RawRecord(file, line, pos, progress=src.progress(), problem=Problem(
                file, line, None, f"not valid UTF-8 (byte {exc.start} of the line: {chunk[exc.start:exc.start + 4]!r}); skipped"))
            continue
        if line == 1:
            text = text.lstrip("\ufeff")
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            yield RawRecord(file, line, pos, progress=src.progress(), problem=Problem(
                file, line, None, f"malformed JSON ({exc.msg}, column {exc.colno}); skipped"))
            continue
        if not isinstance(obj, dict):
            yield RawRecord(file, line, pos, progress=src.progress(), problem=Problem(
                file, line, None, f"expected a JSON object, got {type(obj).__name__}; skipped"))
            continue
        bad = unreadable_field(obj)
        if bad is not None:  # a "\ud800" escape: the text could be neither redacted nor written
            yield RawRecord(file, line, pos, progress=src.progress(), problem=_bad_text(file, line, *bad))
            continue
        yield RawRecord(file, line, pos, data=obj, progress=src.progress())


def read_csv(path: str | os.PathLike, start: int = 0, start_line: int = 0, max_line_bytes: int = 16 << 20,
             delimiter: str | None = None) -> Iterator[RawRecord]:
    """CSV/TSV rows as dicts keyed by the header (quoted fields may span lines)."""
    path = Path(path)
    file = str(path)
    if delimiter is None:
        delimiter = "\t" if path.name.lower().removesuffix(".gz").endswith(".tsv") else ","
    csv.field_size_limit(max(max_line_bytes, 1 << 20))
    src = _Source(path)
    try:
        # the header: always read from the start, even when resuming
        header_src = _lines(src, 0, max_line_bytes)
        try:
            first = next(header_src, None)
        except UnreadableRestError as exc:
            yield RawRecord(file, 1, 0, problem=_unreadable(file, 1, exc))
            return
        if first is None or first[0] is None:
            yield RawRecord(file, 1, 0, problem=Problem(file, 1, None, "no header line (empty file or header too long)"))
            return
        header = next(csv.reader([first[0].decode("utf-8", "replace").lstrip("\ufeff")], delimiter=delimiter))
        header_end = first[1]
        start = max(start, header_end)
        line = max(start_line, 1)
        state = {"pos": start, "line": line, "problems": []}

        def physical() -> Iterator[str]:
            for chunk, n in _lines(src, start, max_line_bytes):
                state["line"] += 1
                state["pos"] += n
                if chunk is None:
                    state["problems"].append(_too_long(file, state["line"], n, max_line_bytes))
                    yield "\n"
                    continue
                yield chunk.decode("utf-8", "surrogateescape")

        reader = csv.reader(physical(), delimiter=delimiter)
        rec_start = state["line"] + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except UnreadableRestError as exc:
                yield RawRecord(file, rec_start, state["pos"], progress=src.progress(), end_line=state["line"],
                                problem=_unreadable(file, rec_start, exc))
                break
            except csv.Error as exc:
                yield RawRecord(file, rec_start, state["pos"], progress=src.progress(), end_line=state["line"],
                                problem=Problem(file, rec_start, None, f"malformed CSV: {exc}; skipped"))
                rec_start = state["line"] + 1
                continue
            for p in state["problems"]:
                yield RawRecord(file, p.row or rec_start, state["pos"], problem=p, progress=src.progress(), end_line=state["line"])
            state["problems"].clear()
            here, rec_start = rec_start, state["line"] + 1
            if not row or all(not c.strip() for c in row):
                continue
            bad = [(header[i] if i < len(header) else f"#{i + 1}", r) for i, c in enumerate(row)
                   if (r := unreadable_text(c)) is not None]
            if bad:
                yield RawRecord(file, here, state["pos"], progress=src.progress(), end_line=state["line"],
                                problem=_bad_text(file, here, *bad[0]))
                continue
            if len(row) != len(header):
                yield RawRecord(file, here, state["pos"], progress=src.progress(), end_line=state["line"], problem=Problem(
                    file, here, None, f"expected {len(header)} fields (header), got {len(row)}; skipped"))
                continue
            yield RawRecord(file, here, state["pos"], data=dict(zip(header, row)), progress=src.progress(), end_line=state["line"])
    finally:
        src.close()


def _bad_text(file: str, line: int, field: str, reason: str) -> Problem:
    return Problem(file, line, field, f"{reason}; skipped")


def read_parquet(path: str | os.PathLike, start: int = 0, batch_size: int = 2048) -> Iterator[RawRecord]:
    """Parquet rows as dicts, batch by batch; ``start``/``end`` are row indices."""
    import pyarrow.parquet as pq

    path = Path(path)
    file = str(path)
    pf = pq.ParquetFile(path)
    total = max(pf.metadata.num_rows, 1)
    size = path.stat().st_size
    groups, first_row, seen = [], 0, 0
    for g in range(pf.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if seen + n > start:
            if not groups:
                first_row = seen
            groups.append(g)
        seen += n
    row = first_row
    if not groups:
        return
    for batch in pf.iter_batches(batch_size=batch_size, row_groups=groups):
        for obj in batch.to_pylist():
            row += 1
            if row <= start:
                continue
            bad = unreadable_field(obj)
            yield RawRecord(file, row, row, data=None if bad else obj, progress=size * row // total,
                            problem=_bad_text(file, row, *bad) if bad else None)


def read_records(path: str | os.PathLike, fmt: Format | None = None, start: int = 0, start_line: int = 0,
                 max_line_bytes: int = 16 << 20, delimiter: str | None = None) -> Iterator[RawRecord]:
    """Dispatch on the format (detected from the name unless given)."""
    fmt = fmt or detect_format(path)
    if fmt == "jsonl":
        return read_jsonl(path, start, start_line, max_line_bytes)
    if fmt == "csv":
        return read_csv(path, start, start_line, max_line_bytes, delimiter)
    if fmt == "parquet":
        return read_parquet(path, start)
    raise ValueError(f"unknown format {fmt!r}")


def progress_total(path: str | os.PathLike) -> int:
    """Size on disk, the unit of :attr:`RawRecord.progress`."""
    return Path(path).stat().st_size


__all__ = ["RawRecord", "detect_format", "read_csv", "read_jsonl", "read_parquet", "read_records", "progress_total"]
