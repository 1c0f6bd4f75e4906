"""Read the upstream safety-data formats into :class:`~guardmatch.data.example.Example` lists.

Formats (``format=``; auto-detected from the extension and the columns when not given):

``wildguardmix``
    ``allenai/wildguardmix`` (``prompt, response, prompt_harm_label, response_harm_label, ...``).
``oaimod``
    OpenAI moderation ``samples-1680.jsonl[.gz]``: ``prompt`` plus flags ``S, H, V, HR, SH, S3, H2,
    V2``; harmful if any flag is 1, a missing/null flag is "not annotated".
``xstest_prompts``
    XSTest v2 CSV ``id, prompt, type, label, focus, note`` (``safe``/``unsafe``).
``aegis2``
    ``nvidia/Aegis-AI-Content-Safety-Dataset-2.0`` (``prompt, response, prompt_label, response_label``).
``normalized``
    guardmatch's own jsonl: ``{"id", "prompt", "response", "label"}`` (+ optional ``source``,
    ``metadata``). A row with a response carries a *response* label.
``generic``
    Any jsonl/csv/parquet with a ``column_mapping`` (``{"text": "prompt", "is_bad": "label"}``)
    and an optional ``label_mapping``; after renaming it is read as ``normalized``.

Containers: ``.jsonl``/``.json`` (one object a line), ``.csv``, ``.parquet`` (each optionally
``.gz`` except parquet), or a Hugging Face Hub dataset (:func:`load_hub`, needs the ``datasets``
extra). Rows are streamed: a bad row never loses the rows read before it. Every problem is
collected; with ``errors="raise"`` a :class:`DataError` listing *all* of them is raised at the end,
with ``errors="skip"`` bad rows are dropped and counted in the report. In both modes
``report.rows_read == report.kept + sum(report.skipped.values())``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator, Literal, Mapping, Sequence, cast

from guardmatch.data.example import (
    LABEL_NAMES,
    Example,
    Task,
    UnknownLabelError,
    is_null,
    parse_label,
)
from guardmatch.data.records import MAX_LINE_BYTES, Record, chunks, file_stem, read_header, read_records
from guardmatch.data.validation import DataError, LoadReport, Problem, unreadable_field
from guardmatch.errors import ConfigError, GuardmatchError, UnknownNameError
from guardmatch.registry import Registry

DEFAULT_MAX_TEXT_CHARS = 1_000_000
"""Default limit on prompt+response length; longer rows are errors (``max_text_chars=None`` = off)."""

Errors = Literal["raise", "skip"]
OAIMOD_FLAGS = ("S", "H", "V", "HR", "SH", "S3", "H2", "V2")
TARGET_FIELDS = ("id", "prompt", "response", "label", "source", "metadata")

_DETECT_ROWS = 50  # rows of a jsonl file looked at to detect its format


# --------------------------------------------------------------------------------------------
# Result type
# --------------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    """Examples read from one or more sources, with the report of what was kept and skipped."""

    examples: list[Example]
    report: LoadReport
    format: str = ""
    task: Task = Task.PROMPT
    origins: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.examples)

    def label_counts(self) -> dict[str, int]:
        """``{"harmful": n, "unharmful": n, "unlabeled": n}`` over the kept examples."""
        counts = Counter(ex.label_name or "unlabeled" for ex in self.examples)
        out = {name: counts.get(name, 0) for name in (LABEL_NAMES[1], LABEL_NAMES[0])}
        if counts.get("unlabeled"):
            out["unlabeled"] = counts["unlabeled"]
        return out

    def summary(self, rows: int = 3, max_chars: int = 300) -> dict[str, Any]:
        """A JSON-ready summary (what ``guardmatch data inspect --json`` prints)."""
        report = self.report.to_dict()
        return {
            "source": report["source"],
            "origins": list(self.origins),
            "format": self.format,
            "task": self.task.value,
            "rows_read": report["rows_read"],
            "kept": report["kept"],
            "labels": self.label_counts(),
            "skipped": dict(sorted(report["skipped"].items())),
            "errors": len(self.report.errors),
            "warnings": sum(p.severity == "warning" for p in self.report.problems),
            "problems": report["problems"],
            "examples": [_preview(ex, max_chars) for ex in self.examples[: max(rows, 0)]],
        }


def _preview(ex: Example, max_chars: int) -> dict[str, Any]:
    def cut(text: str | None) -> str | None:
        if text is None or len(text) <= max_chars:
            return text
        return text[:max_chars] + f"... [{len(text) - max_chars} more chars]"

    out = ex.to_dict()
    out["prompt"] = cut(ex.prompt)
    out["response"] = cut(ex.response)
    return out


# --------------------------------------------------------------------------------------------
# Rows: files through the records layer (guardmatch.data.records), in-memory rows here
# --------------------------------------------------------------------------------------------


def _memory_records(rows: Iterable[Mapping[str, Any]], label: str) -> Iterator[Record]:
    """Rows already in memory (a Hub ``datasets.Dataset``, or a list of dicts) as records."""
    for index, row in enumerate(rows):
        data = dict(row)
        bad = unreadable_field(data)
        problem = None if bad is None else Problem(label, index + 1, bad[0], f"bad text: {bad[1]}")
        yield Record(label, index + 1, index, index + 1, None if problem else data, problem)


def _max_line_bytes(max_text_chars: int | None) -> int:
    """Lines long enough for any row within ``max_text_chars`` (4 UTF-8 bytes a char, JSON overhead)."""
    return max(MAX_LINE_BYTES, 4 * (max_text_chars or 0) + (1 << 16))


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return path


# --------------------------------------------------------------------------------------------
# Format adapters: one small class per upstream schema
# --------------------------------------------------------------------------------------------


class RowIssue(Exception):
    """A problem with one row, raised by an adapter (``reason`` is the report's skip key)."""

    def __init__(self, field: str | None, reason: str, detail: str = "", severity: str = "error"):
        super().__init__(reason)
        self.field, self.reason, self.detail, self.severity = field, reason, detail, severity

    def message(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


@dataclass
class RowFields:
    """What an adapter extracts from a row before the shared checks."""

    id: str
    prompt: Any
    response: Any
    label: Any
    label_field: str
    source: str
    metadata: dict[str, Any]
    label_is_response: bool = False  # normalized rows with a response carry a response label


DATASET_FORMATS: Registry[DatasetFormat] = Registry("dataset format")
"""The formats :func:`load_file` reads by name (``generic`` is ``normalized`` after a column mapping)."""


class DatasetFormat:
    """One upstream schema: which columns it needs, whether a header matches it, and how a row maps.

    Register a subclass with ``@DATASET_FORMATS.register("name")``; ``detect_priority`` orders
    auto-detection (lower is tried first: more specific schemas before general ones).
    """

    name: ClassVar[str] = ""
    tasks: ClassVar[frozenset[Task]] = frozenset({Task.PROMPT, Task.RESPONSE})
    detect_priority: ClassVar[int] = 50

    def required(self, task: Task, require_label: bool) -> list[str]:
        """The columns a file must have for ``task``."""
        raise NotImplementedError

    def matches(self, columns: set[str]) -> bool:
        raise NotImplementedError

    def fields(self, row: dict[str, Any], index: int, task: Task, source: str) -> RowFields:
        raise NotImplementedError


def _need(row: dict[str, Any], column: str) -> Any:
    if column not in row:
        raise RowIssue(column, "missing column", f"the row has no {column!r} field")
    return row[column]


def _scalar_metadata(row: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    out = {}
    for key in keys:
        value = row.get(key)
        if isinstance(value, float) and value != value:
            value = None
        if isinstance(value, (str, int, float, bool)):  # nulls are dropped: absent = unknown
            out[key] = value
    return out


@DATASET_FORMATS.register("wildguardmix")
class _WildGuardMix(DatasetFormat):
    detect_priority = 10
    _meta = ("adversarial", "subcategory", "prompt_harm_label", "response_harm_label", "response_refusal_label",
             "prompt_harm_agreement", "response_harm_agreement", "response_refusal_agreement")

    def required(self, task, require_label):
        label = ["prompt_harm_label"] if task is Task.PROMPT else ["response", "response_harm_label"]
        return ["prompt"] + (label if require_label else label[:-1])

    def matches(self, columns):
        return "prompt_harm_label" in columns or "response_harm_label" in columns

    def fields(self, row, index, task, source):
        label_field = "prompt_harm_label" if task is Task.PROMPT else "response_harm_label"
        meta = _scalar_metadata(row, (k for k in self._meta if k in row and k != label_field))
        return RowFields(
            id=f"{source}-{index}",
            prompt=_need(row, "prompt"),
            response=_need(row, "response") if task is Task.RESPONSE else None,
            label=row.get(label_field),
            label_field=label_field,
            source=source,
            metadata=meta,
        )


@DATASET_FORMATS.register("aegis2")
class _Aegis2(DatasetFormat):
    detect_priority = 20
    _meta = ("violated_categories", "prompt_label_source", "response_label_source", "reconstruction_id_if_redacted")

    def required(self, task, require_label):
        label = ["prompt_label"] if task is Task.PROMPT else ["response", "response_label"]
        return ["prompt"] + (label if require_label else label[:-1])

    def matches(self, columns):
        return "prompt_label" in columns or "response_label" in columns

    def fields(self, row, index, task, source):
        label_field = "prompt_label" if task is Task.PROMPT else "response_label"
        prompt = _need(row, "prompt")
        if isinstance(prompt, str) and prompt.strip() == "REDACTED":
            # Aegis 2.0 withholds some prompts (recoverable via reconstruction_id_if_redacted).
            raise RowIssue("prompt", "redacted prompt", "the upstream row withholds its prompt", "skipped")
        raw_id = row.get("id")
        meta = _scalar_metadata(row, (k for k in self._meta if k in row))
        if task is Task.RESPONSE and "prompt_label" in row:
            meta["prompt_label"] = row.get("prompt_label")
        return RowFields(
            id=f"{source}-{raw_id}" if not is_null(raw_id) else f"{source}-{index}",
            prompt=prompt,
            response=_need(row, "response") if task is Task.RESPONSE else None,
            label=row.get(label_field),
            label_field=label_field,
            source=source,
            metadata=meta,
        )


@DATASET_FORMATS.register("oaimod")
class _OaiMod(DatasetFormat):
    detect_priority = 30
    tasks = frozenset({Task.PROMPT})

    def required(self, task, require_label):
        return ["prompt"]

    def matches(self, columns):
        return "prompt" in columns and "label" not in columns and bool(columns & set(OAIMOD_FLAGS))

    def fields(self, row: dict[str, Any], index: int, task: Task, source: str) -> RowFields:
        annotated: dict[str, int] = {}
        for flag in OAIMOD_FLAGS:
            value = row.get(flag)
            if is_null(value):
                continue  # a missing key (or null) means "not annotated"
            if isinstance(value, bool):
                value = int(value)
            if isinstance(value, str) and value.strip() in ("0", "1"):
                value = int(value.strip())
            if not isinstance(value, (int, float)) or value not in (0, 1):
                raise RowIssue(flag, "unknown label", f"category flag {flag!r} is {value!r} (expected 0 or 1)")
            annotated[flag] = int(value)
        label = None if not annotated else int(any(annotated.values()))
        return RowFields(
            id=f"{source}-{index}",
            prompt=_need(row, "prompt"),
            response=None,
            label=label,
            label_field="/".join(OAIMOD_FLAGS),
            source=source,
            metadata={"flags": annotated, "categories": [f for f, v in annotated.items() if v == 1]},
        )


@DATASET_FORMATS.register("xstest_prompts")
class _XSTestPrompts(DatasetFormat):
    detect_priority = 40
    tasks = frozenset({Task.PROMPT})
    _columns = ("id", "prompt", "type", "label", "focus", "note")

    def required(self, task, require_label):
        return ["id", "prompt"] + (["label"] if require_label else [])

    def matches(self, columns):
        return set(self._columns) <= columns

    def fields(self, row, index, task, source):
        raw_id = _need(row, "id")
        if is_null(raw_id):
            raise RowIssue("id", "missing id", "the id is empty")
        meta = {k: (row.get(k) or None) for k in ("type", "focus", "note") if k in row}
        return RowFields(
            id=f"{source}-{str(raw_id).strip()}",
            prompt=_need(row, "prompt"),
            response=None,
            label=row.get("label"),
            label_field="label",
            source=source,
            metadata=meta,
        )


@DATASET_FORMATS.register("normalized")
class _Normalized(DatasetFormat):
    detect_priority = 90

    def required(self, task, require_label):
        return ["prompt"] + (["response"] if task is Task.RESPONSE else []) + (["label"] if require_label else [])

    def matches(self, columns):
        return "prompt" in columns

    def fields(self, row, index, task, source):
        raw_id = row.get("id")
        row_source = row.get("source")
        metadata = row.get("metadata")
        if metadata is None or (isinstance(metadata, float) and metadata != metadata):
            metadata = {}
        elif isinstance(metadata, str):
            try:
                metadata = json.loads(metadata)
            except json.JSONDecodeError:
                raise RowIssue("metadata", "bad type", "metadata is a string but not a JSON object") from None
        if not isinstance(metadata, dict):
            raise RowIssue("metadata", "bad type", f"metadata must be an object, got {type(metadata).__name__}")
        for key, value in row.items():
            if key not in TARGET_FIELDS and isinstance(value, (str, int, float, bool)):
                metadata.setdefault(key, value)
        response = row.get("response")
        return RowFields(
            id=str(raw_id).strip() if not is_null(raw_id) else f"{source}-{index}",
            prompt=_need(row, "prompt"),
            response=response,
            label=row.get("label"),
            label_field="label",
            source=str(row_source) if isinstance(row_source, str) and row_source.strip() else source,
            metadata=dict(metadata),
            label_is_response=isinstance(response, str) and bool(response.strip()),
        )


def dataset_formats() -> tuple[str, ...]:
    """Every ``format=`` value: the registered formats and ``generic``."""
    return (*DATASET_FORMATS.names(), "generic")


def detect_dataset_format(columns: Iterable[str]) -> str | None:
    """The format whose schema the column names match (after any column mapping), or None."""
    cols = set(columns)
    for name in sorted(DATASET_FORMATS.names(), key=lambda n: DATASET_FORMATS.get(n).detect_priority):
        if DATASET_FORMATS.get(name)().matches(cols):
            return name
    return None


# --------------------------------------------------------------------------------------------
# The shared row pipeline
# --------------------------------------------------------------------------------------------


def _check_mapping(column_mapping: Mapping[str, str] | None) -> dict[str, str]:
    mapping = dict(column_mapping or {})
    bad = {k: v for k, v in mapping.items() if v not in TARGET_FIELDS}
    if bad:
        raise ConfigError(f"column_mapping targets must be one of {TARGET_FIELDS}; got {bad}")
    return mapping


def _rename(row: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    if not mapping:
        return row
    out = {k: v for k, v in row.items() if k not in mapping}
    for src, dst in mapping.items():
        if src in row:
            out[dst] = row[src]
    return out


def _map_label(value: Any, label_mapping: Mapping[Any, Any] | None) -> Any:
    if not label_mapping or value is None:
        return value
    try:
        if value in label_mapping:
            return label_mapping[value]
    except TypeError:  # unhashable (a list): parse_label reports it
        return value
    return label_mapping.get(str(value), value)


def _text(value: Any, field_name: str, what: str) -> str:
    if not isinstance(value, str):
        raise RowIssue(field_name, "bad type", f"{what} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise RowIssue(field_name, "empty text", f"the {what} is empty")
    return value


def _check_row(
    f: RowFields,
    row: dict[str, Any],
    fmt: str,
    task: Task,
    label_mapping: Mapping[Any, Any] | None,
    require_label: bool,
    max_text_chars: int | None,
) -> tuple[str, str | None, int | None] | None:
    """The shared checks: (prompt, response, label), or None for a response label read as a prompt label.

    Raises :class:`RowIssue` for empty/mistyped text, no response, unknown/null label, oversize text.
    """
    prompt = _text(f.prompt, "prompt", "prompt")
    response = None
    if task is Task.RESPONSE:
        if is_null(f.response):
            raise RowIssue("response", "no response", "the row has no response to classify", "skipped")
        response = _text(f.response, "response", "response")
    elif isinstance(f.response, str) and f.response.strip():
        response = f.response  # normalized prompt-task rows keep their response (unlabeled use)
    elif not is_null(f.response):
        raise RowIssue("response", "bad type", f"response must be a string, got {type(f.response).__name__}")
    if f.label_field in row or fmt == "oaimod":
        try:
            value = parse_label(_map_label(f.label, label_mapping))
        except UnknownLabelError as exc:
            raise RowIssue(f.label_field, "unknown label", str(exc).removeprefix("unknown label ")) from None
    elif require_label:
        raise RowIssue(f.label_field, "missing column", f"the row has no {f.label_field!r} field")
    else:
        value = None
    if task is Task.PROMPT and f.label_is_response and value is not None:
        # A normalized row with a response carries a response-harm label, not a prompt label.
        if require_label:
            return None
        value = None
    if value is None and require_label:
        raise RowIssue(f.label_field, "null label", f"{f.label_field} is null", "skipped")
    total = len(prompt) + len(response or "")
    if max_text_chars is not None and total > max_text_chars:
        raise RowIssue("prompt" if len(prompt) > max_text_chars else "response", "oversize text",
                        f"{total:,} characters, over the limit of {max_text_chars:,} (max_text_chars)")
    return prompt, response, value


def _convert(
    records: Iterator[Record],
    columns: list[str] | None,
    *,
    label: str,
    fmt: str | None,
    task: Task,
    column_mapping: Mapping[str, str] | None,
    label_mapping: Mapping[Any, Any] | None,
    source: str,
    errors: Errors,
    require_label: bool,
    max_text_chars: int | None,
) -> LoadResult:
    if errors not in ("raise", "skip"):
        raise ValueError(f"errors must be 'raise' or 'skip', got {errors!r}")
    if fmt is not None and fmt not in dataset_formats():
        raise UnknownNameError(f"unknown format {fmt!r}; expected one of {', '.join(dataset_formats())}")
    mapping = _check_mapping(column_mapping)
    report = LoadReport(source=label)
    examples: list[Example] = []

    def drop(problem: Problem) -> None:
        report.add(problem)
        if problem.severity == "error":  # "skipped" problems are counted by LoadReport.add
            report.skipped[problem.message.split(":")[0]] += 1

    rows: Iterator[Record] = records
    if fmt is None:
        if columns is not None:
            seen_columns = set(columns)
            peeked: list[Record] = []
        else:  # jsonl / in-memory: look at the first rows' keys
            peeked, seen_columns, good = [], set(), 0
            for raw in rows:
                peeked.append(raw)
                if raw.data is not None:
                    seen_columns |= set(raw.data)
                    good += 1
                if good >= _DETECT_ROWS:
                    break
        renamed = {mapping.get(c, c) for c in seen_columns}
        fmt = detect_dataset_format(renamed)
        if fmt == "normalized" and mapping:
            fmt = "generic"
        rows = _chain(peeked, rows)
        if fmt is None:
            if seen_columns or columns is not None:
                shown = sorted(seen_columns)[:20]
                report.add(Problem(label, None, None, (
                    f"unknown format: cannot tell the format from the columns {shown}; pass format= (one of "
                    f"{', '.join(dataset_formats())}) or a column_mapping such as {{'text': 'prompt', 'is_bad': 'label'}}"
                    f"{_delimiter_hint(columns or [])}")))
            elif not peeked:
                report.add(Problem(label, None, None, "empty file: no rows to read"))
            for raw in rows:  # still report every row-level problem (bad UTF-8, bad JSON)
                report.rows_read += 1
                if raw.problem is not None:
                    drop(raw.problem)
                else:
                    report.skipped["unknown format"] += 1
            return _finish(LoadResult([], report, "", task, [label]), errors, label)
    adapter = DATASET_FORMATS.get("normalized" if fmt == "generic" else fmt)()
    if task not in adapter.tasks:
        raise ConfigError(f"{label}: format {fmt!r} has no {task.value} labels (tasks: {sorted(t.value for t in adapter.tasks)})")

    if columns is not None:  # a header: missing columns are a file-level error
        present = {mapping.get(c, c) for c in columns}
        missing = [c for c in adapter.required(task, require_label) if c not in present]
        if missing:
            for column in missing:
                report.add(Problem(label, None, column, f"missing column: the file has no {column!r} column "
                                                         f"(columns: {sorted(columns)}){_delimiter_hint(columns)}"))
            return _finish(LoadResult([], report, fmt, task, [label]), errors, label)

    seen_ids: dict[str, int] = {}
    seen_text: dict[str, tuple[int, int | None]] = {}
    prompt_label_on_response_rows: list[int] = []
    missing_rows: dict[str, list[int]] = {}  # a column absent from rows: one problem per column, not per row
    for raw in rows:
        report.rows_read += 1
        if raw.problem is not None:
            drop(raw.problem)
            continue
        row = _rename(cast(dict[str, Any], raw.data), mapping)  # a record without a problem has data
        try:
            f = adapter.fields(row, raw.index, task, source)
            built = _check_row(f, row, fmt, task, label_mapping, require_label, max_text_chars)
            if built is None:  # a response label read for the prompt task: reported once, below
                prompt_label_on_response_rows.append(raw.line)
                report.skipped["response label for prompt task"] += 1
                continue
            prompt, response, value = built
            if f.id in seen_ids:
                raise RowIssue("id", "duplicate id", f"{f.id!r} was already used at row {seen_ids[f.id]}")
        except RowIssue as issue:
            if issue.reason == "missing column" and issue.field:
                missing_rows.setdefault(issue.field, []).append(raw.line)
                report.skipped["missing column"] += 1
                continue
            drop(Problem(label, raw.line, issue.field, issue.message(), issue.severity))  # type: ignore[arg-type]
            continue
        seen_ids[f.id] = raw.line
        key = Example(f.id, prompt, response).content_hash(task)
        if key in seen_text and value is not None and seen_text[key][1] not in (None, value):
            report.add(Problem(label, raw.line, f.label_field, (
                f"conflicting duplicate: same text as row {seen_text[key][0]} with a different label"), "warning"))
        seen_text.setdefault(key, (raw.line, value))
        examples.append(Example(id=f.id, prompt=prompt, response=response, label=value, source=f.source,
                                metadata=f.metadata))
    for column, rows_missing in missing_rows.items():
        if len(rows_missing) == 1:
            text = f"the row has no {column!r} field"
        else:
            listed = ", ".join(map(str, rows_missing[:5])) + (", ..." if len(rows_missing) > 5 else "")
            text = f"{len(rows_missing):,} rows have no {column!r} field (rows {listed})"
        report.add(Problem(label, rows_missing[0], column, f"missing column: {text}"))
    if prompt_label_on_response_rows:
        rows_shown = ", ".join(map(str, prompt_label_on_response_rows[:5]))
        report.add(Problem(label, None, "label", (
            f"response label for prompt task: {len(prompt_label_on_response_rows)} row(s) have a response, so "
            f"their label is a response-harm label; load with task='response', or require_label=False to use "
            f"the prompts unlabeled (rows {rows_shown}{', ...' if len(prompt_label_on_response_rows) > 5 else ''})")))
    report.kept = len(examples)
    return _finish(LoadResult(examples, report, fmt, task, [label]), errors, label)


def _delimiter_hint(columns: Sequence[str]) -> str:
    """A hint when a CSV header came out as one column holding another delimiter (``id;prompt;label``)."""
    if len(columns) != 1:
        return ""
    for delim, name in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
        if delim in columns[0]:
            return (f"; the header is one column {columns[0]!r}: the file looks {name}-delimited, but CSV is read "
                    f"comma-separated: save it with commas (or as jsonl)")
    return ""


def _chain(first: list[Record], rest: Iterator[Record]) -> Iterator[Record]:
    yield from first
    yield from rest


def _finish(result: LoadResult, errors: Errors, label: str) -> LoadResult:
    result.report.kept = len(result.examples)
    if errors == "raise" and result.report.errors:
        err = DataError(result.report.errors, context=label)
        err.report = result.report  # type: ignore[attr-defined]
        raise err
    return result


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def load_file(
    path: str | Path,
    *,
    format: str | None = None,
    task: Task | str = Task.PROMPT,
    column_mapping: Mapping[str, str] | None = None,
    label_mapping: Mapping[Any, Any] | None = None,
    source: str | None = None,
    errors: Errors = "raise",
    require_label: bool = True,
    max_text_chars: int | None = DEFAULT_MAX_TEXT_CHARS,
) -> LoadResult:
    """Read one local file (jsonl/csv/parquet, optionally gzipped) in any supported ``format``.

    ``task`` picks which label is read (prompt harm or response harm). ``source`` names the data
    (default: the file name without extensions) and prefixes generated ids (``<source>-<row>``).
    Rows with a null label are skipped and counted, unless ``require_label=False`` keeps them as
    unlabeled examples. ``errors="raise"`` raises :class:`DataError` with every problem at the end;
    ``errors="skip"`` drops bad rows and counts them in ``result.report.skipped``.
    """
    path = _existing(path)
    records = read_records(path, max_line_bytes=_max_line_bytes(max_text_chars))
    return _convert(records, read_header(path), label=str(path), fmt=format, task=Task(task),
                    column_mapping=column_mapping, label_mapping=label_mapping, source=source or file_stem(path),
                    errors=errors, require_label=require_label, max_text_chars=max_text_chars)


def load_file_chunks(
    path: str | Path,
    *,
    chunk_size: int = 1024,
    format: str | None = None,
    task: Task | str = Task.PROMPT,
    column_mapping: Mapping[str, str] | None = None,
    require_label: bool = False,
    max_text_chars: int | None = DEFAULT_MAX_TEXT_CHARS,
) -> Iterator[LoadResult]:
    """:func:`load_file`'s result ``chunk_size`` records at a time, streamed from disk (bad rows skipped).

    Row numbers, generated ids (``<source>-<record index>``) and checks are those of ``load_file``;
    the format detected on the first chunk is used for the rest. Duplicate ids are caught within a
    chunk only.
    """
    path = _existing(path)
    columns, fmt = read_header(path), format
    for part in chunks(read_records(path, max_line_bytes=_max_line_bytes(max_text_chars)), chunk_size):
        result = _convert(iter(part), columns, label=str(path), fmt=fmt, task=Task(task),
                          column_mapping=column_mapping, label_mapping=None, source=file_stem(path), errors="skip",
                          require_label=require_label, max_text_chars=max_text_chars)
        fmt = fmt or result.format or None
        yield result


def load_rows(
    rows: Iterable[Mapping[str, Any]],
    *,
    format: str | None = None,
    task: Task | str = Task.PROMPT,
    column_mapping: Mapping[str, str] | None = None,
    label_mapping: Mapping[Any, Any] | None = None,
    source: str = "rows",
    label: str | None = None,
    columns: Sequence[str] | None = None,
    errors: Errors = "raise",
    require_label: bool = True,
    max_text_chars: int | None = DEFAULT_MAX_TEXT_CHARS,
) -> LoadResult:
    """Like :func:`load_file` for rows already in memory (dicts, or a ``datasets.Dataset``)."""
    records = _memory_records(rows, label or source)
    return _convert(records, list(columns) if columns is not None else None, label=label or source, fmt=format,
                    task=Task(task), column_mapping=column_mapping,
                    label_mapping=label_mapping, source=source, errors=errors, require_label=require_label,
                    max_text_chars=max_text_chars)


class MissingExtraError(GuardmatchError, ImportError):
    """An optional dependency is needed for this code path."""


def load_hub(
    repo_id: str,
    config: str | None = None,
    split: str = "test",
    *,
    format: str | None = None,
    task: Task | str = Task.PROMPT,
    column_mapping: Mapping[str, str] | None = None,
    label_mapping: Mapping[Any, Any] | None = None,
    source: str | None = None,
    errors: Errors = "raise",
    require_label: bool = True,
    max_text_chars: int | None = DEFAULT_MAX_TEXT_CHARS,
    revision: str | None = None,
) -> LoadResult:
    """Read a Hugging Face Hub dataset split through ``datasets.load_dataset`` (needs network).

    Requires the optional extra: ``pip install guardmatch[datasets]``.
    """
    try:
        import datasets  # noqa: PLC0415 - optional dependency, imported only on this path
    except ImportError as exc:
        raise MissingExtraError(
            f"reading {repo_id!r} from the Hugging Face Hub needs the 'datasets' package: "
            "pip install guardmatch[datasets]") from exc
    ds = datasets.load_dataset(repo_id, config, split=split, revision=revision)
    label = f"hf://{repo_id}" + (f"/{config}" if config else "") + f"[{split}]"
    return load_rows(ds, format=format, task=task, column_mapping=column_mapping, label_mapping=label_mapping,
                     source=source or config or repo_id.split("/")[-1], label=label, columns=list(ds.column_names),
                     errors=errors, require_label=require_label, max_text_chars=max_text_chars)


def merge_results(results: Sequence[LoadResult], source: str, errors: Errors = "raise") -> LoadResult:
    """Concatenate several results (e.g. the parts of a pool); ids must stay unique across them."""
    report = LoadReport(source=source)
    examples: list[Example] = []
    seen: dict[str, str] = {}
    for res in results:
        report.merge(res.report)
        for ex in res.examples:
            if ex.id in seen:
                report.add(Problem(res.report.source, None, "id",
                                   f"duplicate id: {ex.id!r} is also in {seen[ex.id]}"))
                report.skipped["duplicate id"] += 1
                continue
            seen[ex.id] = res.report.source
            examples.append(ex)
    fmts = sorted({r.format for r in results})
    task = results[0].task if results else Task.PROMPT
    merged = LoadResult(examples, report, "+".join(fmts), task, [o for r in results for o in r.origins])
    return _finish(merged, errors, source)


def save_jsonl(examples: Iterable[Example], path: str | Path) -> Path:
    """Write examples in the normalized jsonl format (readable back with :func:`load_file`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for ex in examples:
            fh.write(json.dumps(ex.to_dict(), ensure_ascii=False) + "\n")
    return path
