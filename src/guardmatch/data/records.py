"""The records layer: every file guardmatch reads or writes row by row goes through here.

Reading (:func:`read_records`): JSONL (one object a line), CSV/TSV (a header, quoted fields may span
lines) and Parquet, the text formats optionally ``.gz``. Records are streamed one at a time in
bounded memory, each with the position to resume from after it (a byte offset in the uncompressed
stream for JSONL/CSV, a row index for Parquet). Bad input never stops a file: a malformed line, bad
UTF-8, a text that is not valid Unicode, a line longer than ``max_line_bytes`` (skipped in 1 MiB
chunks, never held whole) or an encrypted line without its key becomes a record carrying a
:class:`~guardmatch.data.validation.Problem` (file, line, field) and reading goes on. Every problem
message starts with its reason (``bad JSON: ...``), the key readers count skips by.

Writing: :func:`open_jsonl_writer` (0600, each line encrypted when a cipher is given) and the strict
reader of what it wrote, :func:`iter_jsonl`. :func:`chunks` cuts any record stream into lists.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, TypeVar

from guardmatch.data.validation import Problem, unreadable_field, unreadable_text
from guardmatch.errors import GuardmatchError
from guardmatch.storage.crypto import AtRestCipher, EncryptionKeyError, decode_line, encode_line, is_encrypted_line
from guardmatch.storage.files import secure_open

Container = Literal["jsonl", "csv", "parquet"]
CONTAINERS: tuple[Container, ...] = ("jsonl", "csv", "parquet")
MAX_LINE_BYTES = 16 << 20
_SKIP_CHUNK = 1 << 20
_PARQUET_BATCH = 1024
T = TypeVar("T")


class UnknownContainerError(GuardmatchError, ValueError):
    """A file name whose extension is none of the containers guardmatch reads."""


@dataclass
class Record:
    """One record (``data``) or one problem at ``line`` of ``file``.

    ``line``: as an editor shows it (the JSONL line, the CSV line where the record starts, the
    Parquet row, 1-based); ``index``: 0-based position among the file's records (problems count);
    ``end``: the resume position after it; ``progress``: bytes of the (possibly compressed) file
    consumed; ``end_line``: the last physical line consumed (CSV records may span lines).
    """

    file: str
    line: int
    index: int
    end: int
    data: dict[str, Any] | None = None
    problem: Problem | None = None
    progress: int = 0
    end_line: int | None = None

    @property
    def resume_line(self) -> int:
        return self.line if self.end_line is None else self.end_line


def detect_container(path: str | os.PathLike) -> Container:
    """The container from the name: ``.jsonl/.ndjson/.json[.gz]``, ``.csv/.tsv[.gz]``, ``.parquet/.pq``."""
    name = Path(path).name.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith((".csv", ".tsv")):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    raise UnknownContainerError(f"{path}: unknown file type (expected .jsonl, .csv, .tsv or .parquet, the text "
                                "formats optionally .gz); pass the format explicitly")


def file_stem(path: str | os.PathLike) -> str:
    """The file name without its extensions: ``data/pool.jsonl.gz`` -> ``pool``."""
    name = Path(path).name
    name = name[:-3] if name.lower().endswith(".gz") else name
    return name.rsplit(".", 1)[0] if "." in name else name


def progress_total(path: str | os.PathLike) -> int:
    """Size on disk, the unit of :attr:`Record.progress`."""
    return Path(path).stat().st_size


def read_header(path: str | os.PathLike, container: Container | None = None,
                delimiter: str | None = None) -> list[str] | None:
    """The column names of a CSV or Parquet file (None for JSONL, whose rows carry their own keys)."""
    container = container or detect_container(path)
    if container == "parquet":
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(path).schema_arrow.names)
    if container == "jsonl":
        return None
    src = _Source(Path(path))
    try:
        first = next(_lines(src, 0, MAX_LINE_BYTES), None)
    except UnreadableRestError:
        return []
    finally:
        src.close()
    if first is None or first[0] is None:
        return []
    return next(csv.reader([first[0].decode("utf-8", "replace").lstrip("\ufeff")],
                           delimiter=delimiter or _default_delimiter(Path(path))), [])


def read_records(path: str | os.PathLike, container: Container | None = None, *, start: int = 0,
                 start_line: int = 0, start_index: int = 0, max_line_bytes: int = MAX_LINE_BYTES,
                 delimiter: str | None = None, cipher: AtRestCipher | None = None) -> Iterator[Record]:
    """The records of one file, from resume position ``start`` (0: the beginning).

    ``container`` is detected from the name unless given; ``start_line``/``start_index`` are the
    line and record counts already consumed before ``start``. Encrypted JSONL lines are decrypted
    with ``cipher`` or ``$GUARDMATCH_ENCRYPTION_KEY``.
    """
    container = container or detect_container(path)
    if container == "jsonl":
        return _read_jsonl(Path(path), start, start_line, start_index, max_line_bytes, cipher)
    if container == "csv":
        return _read_csv(Path(path), start, start_line, start_index, max_line_bytes, delimiter)
    if container == "parquet":
        return _read_parquet(Path(path), start)
    raise UnknownContainerError(f"unknown container {container!r}; expected one of {', '.join(CONTAINERS)}")


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` as lists of at most ``size`` (the last may be shorter)."""
    it = iter(items)
    while batch := list(itertools.islice(it, size)):
        yield batch


# --------------------------------------------------------------------------------------------
# bytes and lines
# --------------------------------------------------------------------------------------------


class _Source:
    """A binary stream over the file, decompressed if ``.gz``, and the raw position for progress."""

    def __init__(self, path: Path):
        self.raw = open(path, "rb")
        self.fh: gzip.GzipFile | io.BufferedReader = (
            gzip.GzipFile(fileobj=self.raw) if path.name.lower().endswith(".gz") else self.raw
        )

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


def _unreadable(file: str, line: int, exc: Exception) -> Problem:
    return Problem(file, line, None, f"file unreadable from here on (truncated or corrupt?): {exc}; rest of file skipped")


def _bad_text(file: str, line: int, field: str, reason: str) -> Problem:
    return Problem(file, line, field, f"bad text: {reason}")


# --------------------------------------------------------------------------------------------
# JSONL
# --------------------------------------------------------------------------------------------


def _read_jsonl(path: Path, start: int, start_line: int, start_index: int, max_line_bytes: int,
                cipher: AtRestCipher | None) -> Iterator[Record]:
    file = str(path)
    src = _Source(path)
    pos, line, index = start, start_line, start_index
    try:
        for chunk, n in _lines(src, start, max_line_bytes):
            pos += n
            line += 1
            if chunk is not None and not chunk.strip():
                continue
            problem, obj = None, None
            if chunk is None:
                problem = _too_long(file, line, n, max_line_bytes)
            else:
                problem, obj = _parse_json_line(chunk, file, line, cipher)
            yield Record(file, line, index, pos, obj, problem, src.progress())
            index += 1
    except UnreadableRestError as exc:
        yield Record(file, line + 1, index, pos, problem=_unreadable(file, line + 1, exc), progress=src.progress())
    finally:
        src.close()


def _parse_json_line(chunk: bytes, file: str, line: int,
                     cipher: AtRestCipher | None) -> tuple[Problem | None, dict[str, Any] | None]:
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Problem(file, line, None, f"bad UTF-8: byte {exc.start} of the line is not valid UTF-8 "
                                         f"({chunk[exc.start:exc.start + 4]!r})"), None
    if line == 1:
        text = text.lstrip("\ufeff")
    if is_encrypted_line(text):  # pools written with $GUARDMATCH_ENCRYPTION_KEY set
        try:
            text = decode_line(text.strip(), cipher, file=file, line_no=line)
        except EncryptionKeyError as exc:
            return Problem(file, line, None, str(exc)), None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return Problem(file, line, None, f"bad JSON: {exc.msg} (column {exc.colno})"), None
    if not isinstance(obj, dict):
        return Problem(file, line, None, f"bad JSON: expected an object, got {type(obj).__name__}"), None
    bad = unreadable_field(obj)
    if bad is not None:  # a "\ud800" escape: the text could be neither tokenized nor written back
        return _bad_text(file, line, *bad), None
    return None, obj


# --------------------------------------------------------------------------------------------
# CSV / TSV
# --------------------------------------------------------------------------------------------


def _default_delimiter(path: Path) -> str:
    return "\t" if path.name.lower().removesuffix(".gz").endswith(".tsv") else ","


def _read_csv(path: Path, start: int, start_line: int, start_index: int, max_line_bytes: int,
              delimiter: str | None) -> Iterator[Record]:
    file = str(path)
    delimiter = delimiter or _default_delimiter(path)
    if csv.field_size_limit() < max_line_bytes:
        csv.field_size_limit(max_line_bytes)
    src = _Source(path)
    try:
        header_lines = _lines(src, 0, max_line_bytes)  # the header: always read from the start
        try:
            first = next(header_lines, None)
        except UnreadableRestError as exc:
            yield Record(file, 1, start_index, 0, problem=_unreadable(file, 1, exc))
            return
        if first is None or first[0] is None:
            if first is not None:
                yield Record(file, 1, start_index, 0, problem=Problem(file, 1, None, "no header line (header too long)"))
            return
        header = next(csv.reader([first[0].decode("utf-8", "replace").lstrip("\ufeff")], delimiter=delimiter))
        start = max(start, first[1])
        state: dict[str, Any] = {"pos": start, "line": max(start_line, 1), "problems": []}

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
        rec_start, index = state["line"] + 1, start_index

        def record(line: int, data: dict[str, Any] | None = None, problem: Problem | None = None) -> Record:
            nonlocal index
            index += 1
            return Record(file, line, index - 1, state["pos"], data, problem, src.progress(), state["line"])

        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except UnreadableRestError as exc:
                yield record(rec_start, problem=_unreadable(file, rec_start, exc))
                break
            except csv.Error as exc:
                yield record(rec_start, problem=Problem(file, rec_start, None, f"bad CSV: {exc}"))
                rec_start = state["line"] + 1
                continue
            for p in state["problems"]:
                yield record(p.row or rec_start, problem=p)
            state["problems"].clear()
            here, rec_start = rec_start, state["line"] + 1
            if not row or all(not c.strip() for c in row):
                continue
            bad = [(header[i] if i < len(header) else f"#{i + 1}", r) for i, c in enumerate(row)
                   if (r := unreadable_text(c)) is not None]
            if bad:
                yield record(here, problem=_bad_text(file, here, *bad[0]))
            elif len(row) != len(header):
                yield record(here, problem=Problem(file, here, None, f"bad CSV: {len(row)} fields, the header has "
                                                                     f"{len(header)}"))
            else:
                yield record(here, dict(zip(header, row)))
    finally:
        src.close()


# --------------------------------------------------------------------------------------------
# Parquet
# --------------------------------------------------------------------------------------------


def _read_parquet(path: Path, start: int) -> Iterator[Record]:
    """Rows batch by batch (``start``/``end`` are row indices); a batch with bad UTF-8 is re-read cell by cell."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    file = str(path)
    pf = pq.ParquetFile(path)
    total = max(pf.metadata.num_rows, 1)
    size = path.stat().st_size
    groups: list[int] = []
    first_row, seen = 0, 0
    for g in range(pf.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if seen + n > start:
            if not groups:
                first_row = seen
            groups.append(g)
        seen += n
    if not groups:
        return
    row = first_row
    for batch in pf.iter_batches(batch_size=_PARQUET_BATCH, row_groups=groups):
        for data, problem in _parquet_rows(batch, pa, file, row):
            row += 1
            if row <= start:
                continue
            if problem is None and (bad := unreadable_field(data)) is not None:
                data, problem = None, _bad_text(file, row, *bad)
            yield Record(file, row, row - 1, row, data, problem, size * row // total)


def _parquet_rows(batch: Any, pa: Any, file: str, first: int) -> Iterator[tuple[dict | None, Problem | None]]:
    try:
        rows = batch.to_pylist()
    except (UnicodeDecodeError, pa.ArrowException):
        rows = None
    if rows is not None:
        for r in rows:
            yield r, None
        return
    columns = {}  # slow path: strings as bytes, decoded one cell at a time so the bad row is named
    for name, col in zip(batch.schema.names, batch.columns):
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            col = col.view(pa.binary() if pa.types.is_string(col.type) else pa.large_binary())
        columns[name] = col.to_pylist()
    for i in range(batch.num_rows):
        data, problem = {}, None
        for name, values in columns.items():
            value = values[i]
            if isinstance(value, bytes):
                try:
                    value = value.decode("utf-8")
                except UnicodeDecodeError:
                    problem = problem or Problem(file, first + i + 1, name, "bad UTF-8: the field is not valid UTF-8")
            data[name] = value
        yield (None if problem else data), problem


# --------------------------------------------------------------------------------------------
# writing, and reading back what guardmatch wrote
# --------------------------------------------------------------------------------------------


class JsonlWriter:
    """Writes one JSON object (or pre-serialized line) per line to a 0600 file, encrypted when a cipher is set."""

    def __init__(self, path: str | os.PathLike, cipher: AtRestCipher | None = None, append: bool = False):
        self.path = Path(path)
        self.cipher = cipher
        self._fh = secure_open(self.path, "a" if append else "w")
        self.rows = 0

    def write(self, obj: Any) -> None:
        self.write_line(json.dumps(obj, ensure_ascii=False))

    def write_line(self, line: str) -> None:
        self._fh.write(encode_line(line, self.cipher) + "\n")
        self.rows += 1

    def flush(self, fsync: bool = False) -> None:
        self._fh.flush()
        if fsync:
            os.fsync(self._fh.fileno())

    def tell(self) -> int:
        return self._fh.tell()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_jsonl_writer(path: str | os.PathLike, cipher: AtRestCipher | None = None, append: bool = False) -> JsonlWriter:
    """A 0600 JSONL writer; ``cipher=AtRestCipher.from_env()`` to follow the user's setting."""
    return JsonlWriter(path, cipher=cipher, append=append)


def iter_jsonl(path: str | os.PathLike, cipher: AtRestCipher | None = None) -> Iterator[dict]:
    """Parsed objects of a (possibly encrypted) JSONL file guardmatch wrote; blank lines skipped.

    Strict: a malformed line raises (use :func:`read_records` for input that may be bad).
    """
    with open(path, encoding="utf-8") as fh:
        for i, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            yield json.loads(decode_line(raw, cipher, file=str(path), line_no=i))
