"""Review exchange files: export a queue for people (or other tools), import their decisions.

Formats (files only, no server needed):

``jsonl`` / ``csv``
    One row per item: ``id, prompt, response, p_harmful, predicted, confidence, model_version,
    strategy, priority, label, reviewer, note, reviewed_at``. Reviewers fill ``label``
    (harmful / unharmful / skip; any spelling :func:`~guardmatch.data.example.parse_label` knows),
    ``reviewer`` (or pass ``reviewer=`` on import) and optionally ``note`` / ``reviewed_at``.
    Rows with an empty label are not reviewed yet and are ignored.
``argilla``
    Export: a JSON list of flat records for ``dataset.records.log(json.load(f))``, built the way
    Argilla's default mapping reads them (every key is a field, a metadata property, a question or
    ``id``, so nothing is ignored): ``{"id", "prompt", "response", "label", "p_harmful",
    "confidence", "priority", "strategy", "model_version"}``, where ``label`` is the model's
    predicted label (Argilla makes a question-named key a *suggestion*, never a response). The
    matching dataset settings are written next to it as ``<name>.argilla_settings.json``
    (``rg.Settings.from_json(path)``): fields ``prompt`` (and ``response``), a ``LabelQuestion``
    ``label`` (harmful / unharmful), an optional ``TextQuestion`` ``note``, float metadata
    ``p_harmful`` / ``confidence`` / ``priority`` and terms metadata ``strategy`` / ``model_version``.
    Import reads what Argilla 2.x writes: ``records.to_json(path)`` and ``dataset.to_disk(dir)``
    (a directory: its ``records.json``) give nested records ``{"id", "fields", "responses":
    {"label": [{"value", "user_id"}]}, ...}``; ``records.to_list(flatten=True)``,
    ``records.to_datasets()`` (saved with ``to_json`` / ``to_parquet``) and Hub exports give flat
    records with ``label.responses``, ``label.responses.users``, ``label.responses.status``.
    Submitted responses are reviews, *discarded* ones are skips, *drafts* are ignored. Argilla's
    nested writer drops the response status: there a response without a value is read as a discard
    and one with a value as submitted, and the import reports that it could not tell drafts apart
    (export with ``to_datasets()`` / ``to_list(flatten=True)`` to keep the status). The reviewer is
    Argilla's ``user_id``.
``labelstudio``
    Label Studio tasks (a JSON list): ``{"data": {"item_id", "prompt", "response", "p_harmful"},
    "predictions": [{"model_version", "score", "result": [{"from_name": "label", "to_name":
    "prompt", "type": "choices", "value": {"choices": ["harmful"]}}]}]}``; the labeling config
    that matches is written next to it (``<name>.label_config.xml``). Import reads Label Studio's
    JSON export (every annotation is a review; cancelled annotations are skips; a ``note``
    TextArea becomes the note) and its JSON-MIN and CSV exports (one row per annotation, the item
    in ``item_id``, the reviewer in ``annotator``; Label Studio leaves cancelled annotations out
    of these two). The reviewer keeps its name: ``completed_by``'s email (or username, or first and
    last name) when the export expanded the user, else the email in ``created_username``; a bare
    user number becomes ``labelstudio-user-<n>``.

A file in which nothing is recognisable (no records with an item id and a label field, in any of
the forms above) is refused with a :class:`DataError` rather than imported as zero reviews.

Import is all-or-nothing: every row is validated first (unknown item, unknown label, missing
reviewer, text that does not match the stored item, two different labels by one reviewer for one
item in one file) and any problem stops the import with a :class:`DataError` naming file, row and
field, before anything is written, unless ``errors="skip"`` drops the bad rows (reported). Then
one transaction stores the reviews and records the file's sha256: importing the same file again
changes nothing, and the same review arriving in another file is stored once (dedupe key).
Exports are written owner-only (0600) and recorded in the audit log.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Callable, Iterable

from guardmatch.data.example import LABEL_NAMES, UnknownLabelError, is_null, text_hash
from guardmatch.data.records import Container, read_header, read_records
from guardmatch.data.validation import DataError, Problem
from guardmatch.errors import ConfigError
from guardmatch.review.store import MAX_REVIEWER_CHARS, SKIP, ReviewStore, _label_value
from guardmatch.storage.audit import audit_log
from guardmatch.storage.files import secure_open

FORMATS = ("jsonl", "csv", "argilla", "labelstudio")
ARGILLA_SETTINGS_SUFFIX = ".argilla_settings.json"
LS_USER_PREFIX = "labelstudio-user-"
FLAT_COLUMNS = ("id", "prompt", "response", "p_harmful", "predicted", "confidence", "model_version", "strategy",
                "priority", "label", "reviewer", "note", "reviewed_at")
QUESTION = "label"
NOTE = "note"


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------


def _export_records(store: ReviewStore, which: str) -> list[dict[str, Any]]:
    if which == "pending":
        ids = store.pending_ids()
    elif which == "queue":
        ids = store.queue_ids()
    else:
        raise ConfigError(f"unknown selection {which!r}; expected 'pending' or 'queue'")
    strategies = {r["id"]: r["strategy"] for r in store.routings()}
    routing_of = {r[0]: r[1] for r in store.conn.execute("SELECT item_id, routing_id FROM queue")}
    out = []
    for i in ids:
        q = store.queue_item(i, 0, 0)
        conf = None
        if q.p_harmful is not None:
            conf = q.p_harmful if q.predicted == LABEL_NAMES[1] else 1.0 - q.p_harmful
        out.append({
            "id": q.item_id, "prompt": q.prompt, "response": q.response,
            "p_harmful": None if q.p_harmful is None else round(q.p_harmful, 6),
            "predicted": q.predicted, "confidence": None if conf is None else round(conf, 6),
            "model_version": q.model_version, "strategy": strategies.get(routing_of.get(i)),
            "priority": round(q.priority, 6),
            "label": q.label if q.provenance == "human" else None, "reviewer": None, "note": None, "reviewed_at": None,
        })
    return out


def _label_config(with_response: bool) -> str:
    response = '  <Header value="Response"/>\n  <Text name="response" value="$response"/>\n' if with_response else ""
    return (
        "<View>\n"
        '  <Header value="Prompt"/>\n'
        '  <Text name="prompt" value="$prompt"/>\n'
        f"{response}"
        '  <Choices name="label" toName="prompt" choice="single" showInline="true">\n'
        '    <Choice value="harmful" hotkey="h"/>\n'
        '    <Choice value="unharmful" hotkey="u"/>\n'
        "  </Choices>\n"
        '  <TextArea name="note" toName="prompt" placeholder="note (optional)" maxSubmissions="1"/>\n'
        "</View>\n"
    )


def argilla_settings(with_response: bool) -> dict[str, Any]:
    """The Argilla v2 dataset settings the export fits, in ``rg.Settings.to_json`` form."""

    def field(name: str, required: bool) -> dict[str, Any]:
        return {"name": name, "title": name, "required": required, "description": None, "type": "text",
                "settings": {"type": "text", "use_markdown": False}}

    def meta(name: str, kind: str) -> dict[str, Any]:
        settings: dict[str, Any] = {"visible_for_annotators": True, "type": kind}
        settings.update({"min": None, "max": None} if kind == "float" else {"values": None})
        return {"name": name, "title": name, "visible_for_annotators": True, "settings": settings}

    labels = [{"text": n, "value": n} for n in (LABEL_NAMES[1], LABEL_NAMES[0])]
    return {
        "guidelines": "Is this prompt (or this model response) harmful? Pick harmful or unharmful; "
                      "discard the record to skip it. The suggestion is the model's prediction.",
        "fields": [field("prompt", True)] + ([field("response", False)] if with_response else []),
        "questions": [
            {"name": QUESTION, "title": QUESTION, "description": None, "required": True, "type": "label_selection",
             "settings": {"type": "label_selection", "options": labels, "visible_options": None}},
            {"name": NOTE, "title": NOTE, "description": None, "required": False, "type": "text",
             "settings": {"type": "text", "use_markdown": False}},
        ],
        "vectors": [],
        "metadata": [meta("p_harmful", "float"), meta("confidence", "float"), meta("priority", "float"),
                     meta("strategy", "terms"), meta("model_version", "terms")],
        "allow_extra_metadata": False,
        "distribution": {"strategy": "overlap", "min_submitted": 1},
        "mapping": None,
    }


def export_queue(store: ReviewStore, path: str | Path, fmt: str, *, which: str = "pending") -> dict[str, Any]:
    """Write the queue (``pending`` items, or the whole ``queue``) as ``fmt``; audited. Returns a summary."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    path = Path(path)
    records = _export_records(store, which)
    with_response = store.task.value == "response" or any(r["response"] for r in records)
    extra_files: list[str] = []
    with secure_open(path, "w", newline="" if fmt == "csv" else None) as fh:
        if fmt == "jsonl":
            for r in records:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        elif fmt == "csv":
            writer = csv.DictWriter(fh, fieldnames=list(FLAT_COLUMNS))
            writer.writeheader()
            for r in records:
                writer.writerow({k: ("" if r[k] is None else r[k]) for k in FLAT_COLUMNS})
        elif fmt == "argilla":
            out = []
            for r in records:
                rec: dict[str, Any] = {"id": r["id"], "prompt": r["prompt"]}
                if with_response:
                    rec["response"] = r["response"] or ""
                rec.update({QUESTION: r["predicted"], "p_harmful": r["p_harmful"], "confidence": r["confidence"],
                            "priority": r["priority"], "strategy": r["strategy"], "model_version": r["model_version"]})
                out.append(rec)
            json.dump(out, fh, ensure_ascii=False, indent=1)
        else:  # labelstudio
            out = []
            for r in records:
                data = {"item_id": r["id"], "prompt": r["prompt"], "p_harmful": r["p_harmful"],
                        "strategy": r["strategy"]}
                if with_response:
                    data["response"] = r["response"] or ""
                task: dict[str, Any] = {"data": data}
                if r["predicted"] is not None:
                    task["predictions"] = [{
                        "model_version": r["model_version"], "score": r["confidence"],
                        "result": [{"from_name": QUESTION, "to_name": "prompt", "type": "choices",
                                    "value": {"choices": [r["predicted"]]}}],
                    }]
                out.append(task)
            json.dump(out, fh, ensure_ascii=False, indent=1)
    if fmt == "argilla":
        cfg = path.with_name(path.name.split(".")[0] + ARGILLA_SETTINGS_SUFFIX)
        with secure_open(cfg, "w") as fh:
            json.dump(argilla_settings(with_response), fh, indent=1)
        extra_files.append(str(cfg))
    if fmt == "labelstudio":
        cfg = path.with_name(path.name.split(".")[0] + ".label_config.xml")
        with secure_open(cfg, "w") as fh:
            fh.write(_label_config(with_response))
        extra_files.append(str(cfg))
    audit_log("export", path, len(records), format=fmt, store=str(store.path), selection=which,
              kind="review_queue")
    return {"path": str(path), "format": fmt, "rows": len(records), "extra_files": extra_files}


# --------------------------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------------------------


def _norm_time(value: Any) -> str | None:
    """ISO-8601 in UTC with microseconds (comparable as text); None when absent."""
    if is_null(value):
        return None
    if isinstance(value, (int, float)):
        t = _dt.datetime.fromtimestamp(float(value), tz=_dt.timezone.utc)
    else:
        s = str(value).strip().replace("Z", "+00:00")
        try:
            t = _dt.datetime.fromisoformat(s)
        except ValueError:
            raise ConfigError(f"not an ISO-8601 time: {value!r}") from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=_dt.timezone.utc)
    return t.astimezone(_dt.timezone.utc).isoformat(timespec="microseconds")


_ARGILLA_FLAT_SUFFIXES = (".responses", ".responses.users", ".responses.status", ".suggestion")


def _is_argilla_flat(obj: dict[str, Any]) -> bool:
    return any(isinstance(k, str) and k.endswith(_ARGILLA_FLAT_SUFFIXES) for k in obj)


def _is_labelstudio_flat(keys: Iterable[str]) -> bool:
    keys = set(keys)
    return "annotator" in keys and "annotation_id" in keys


def _first_record(path: Path, text: str) -> Any:
    try:
        if text.startswith("["):
            items = json.loads(text)
            return items[0] if items else {}
        line = next((ln for ln in text.splitlines() if ln.strip()), "{}")
        return json.loads(line)
    except (json.JSONDecodeError, StopIteration):
        raise DataError([Problem(str(path), None, None, "not JSON/JSONL (and not a .csv file): cannot tell the format")],
                        context="review import") from None


def detect_export_format(path: Path, data: bytes) -> str:
    """Which review export ``path`` is: ``jsonl``, ``csv``, ``argilla`` or ``labelstudio``."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "argilla"  # Argilla's to_datasets() / Hub exports; the only parquet review file we read
    text = data.decode("utf-8-sig", errors="replace").lstrip()
    if name.endswith(".csv"):
        header = read_header(path, "csv") or []
        return "labelstudio" if _is_labelstudio_flat(header) else "csv"
    first = _first_record(path, text)
    if isinstance(first, dict):
        if "fields" in first and ("responses" in first or "suggestions" in first):
            return "argilla"
        if _is_argilla_flat(first):
            return "argilla"
        if "data" in first and isinstance(first["data"], dict):
            return "labelstudio"
        if _is_labelstudio_flat(first):
            return "labelstudio"
        if text.startswith("[") and QUESTION in first and "reviewer" not in first and "prompt" in first:
            return "argilla"  # our own records.log export (``label`` there is the model's suggestion)
        return "jsonl"
    raise DataError([Problem(str(path), 1, None, "expected JSON objects")], context="review import")


def _json_records(path: Path, text: str, problems: list[Problem]) -> list[tuple[int, Any]]:
    """``(row number, object)``: a JSON list (row = position, 1-based) or JSONL (row = line)."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except json.JSONDecodeError as exc:
            problems.append(Problem(str(path), None, None, f"invalid JSON: {exc}"))
            return []
        return list(enumerate(items, 1))
    return _file_records(path, "jsonl", problems)


def _file_records(path: Path, container: Container, problems: list[Problem]) -> list[tuple[int, Any]]:
    """``(row number, record)`` through the records layer; its problems go to ``problems``."""
    out = []
    for rec in read_records(path, container):
        if rec.problem is not None:
            problems.append(rec.problem)
        else:
            out.append((rec.line, rec.data))
    return out


def _blank_as_none(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if v != "" else None) for k, v in row.items()}


def _flat_rows(path: Path, text: str, fmt: str, problems: list[Problem]) -> Iterable[dict[str, Any]]:
    if fmt == "csv":
        header = read_header(path, "csv") or []
        if "id" not in header or "label" not in header:
            problems.append(Problem(str(path), None, None, f"a review CSV needs columns 'id' and 'label' "
                                                           f"(found {header})"))
            return
        for n, row in _file_records(path, "csv", problems):
            yield {"row": n, **_blank_as_none(row)}
    else:
        for n, obj in _json_records(path, text, problems):
            if not isinstance(obj, dict):
                problems.append(Problem(str(path), n, None, "expected a JSON object"))
                continue
            yield {"row": n, **obj}


def _as_list(value: Any) -> list[Any]:
    """A flattened Argilla column: a list (JSON), an array (parquet), a JSON string (CSV) or nothing."""
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return [value]
    if hasattr(value, "tolist"):
        value = value.tolist()
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _argilla_flat_responses(rec: dict[str, Any], question: str) -> list[dict[str, Any]]:
    values = _as_list(rec.get(f"{question}.responses"))
    users = _as_list(rec.get(f"{question}.responses.users"))
    statuses = _as_list(rec.get(f"{question}.responses.status"))
    out = []
    for k, value in enumerate(values):
        out.append({"value": value, "user_id": users[k] if k < len(users) else None,
                    "status": statuses[k] if k < len(statuses) else None})
    return out


def _argilla_rows(path: Path, records: list[tuple[int, Any]], problems: list[Problem],
                  info: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for n, rec in records:
        if not isinstance(rec, dict):
            problems.append(Problem(str(path), n, None, "expected an Argilla record object"))
            continue
        if "fields" in rec or "responses" in rec:  # nested: records.to_json / to_disk
            responses = rec.get("responses") or {}
            if not isinstance(responses, dict):
                problems.append(Problem(str(path), n, "responses", "expected {question: [responses]}"))
                continue
            fields = rec.get("fields") or {}
            labels, note_list = responses.get(QUESTION, []) or [], responses.get(NOTE, []) or []
            field_name = f"responses.{QUESTION}"
        else:  # flat: to_list(flatten=True) / to_datasets() / Hub
            fields = rec
            labels, note_list = _argilla_flat_responses(rec, QUESTION), _argilla_flat_responses(rec, NOTE)
            field_name = f"{QUESTION}.responses"
        notes = {str(r.get("user_id")): r.get("value") for r in note_list
                 if isinstance(r, dict) and str(r.get("status") or "submitted").lower() != "draft"}
        if not is_null(rec.get("id")) and (field_name.startswith("responses") or _is_argilla_flat(rec)
                                           or QUESTION in rec):
            info["recognised"] += 1
        for r in labels:
            if not isinstance(r, dict):
                problems.append(Problem(str(path), n, field_name, "expected a response object"))
                continue
            status = r.get("status")
            value = r.get("value")
            if is_null(status):
                info["status_unknown"] += 1
                status = "discarded" if is_null(value) else "submitted"
            status = str(status).lower()
            if status == "draft":
                info["drafts"] += 1
                continue
            if status == "discarded":
                value = SKIP
            elif status != "submitted":
                problems.append(Problem(str(path), n, f"{field_name}.status",
                                        f"unknown response status {status!r}; expected submitted, discarded or draft"))
                continue
            user = r.get("user_id")
            yield {"row": n, "id": rec.get("id"), "label": value, "reviewer": None if is_null(user) else str(user),
                   "note": notes.get(str(user)), "reviewed_at": r.get("updated_at") or r.get("inserted_at"),
                   "prompt": fields.get("prompt"), "response": fields.get("response"), "_field": field_name}


_EMAIL = re.compile(r"[^\s,]+@[^\s,]+")


def _ls_user(value: Any) -> str | None:
    """A reviewer name from Label Studio's ``completed_by`` / ``annotator`` (expanded user or number)."""
    if isinstance(value, dict):
        for key in ("email", "username"):
            if not is_null(value.get(key)) and str(value[key]).strip():
                return str(value[key]).strip()
        name = " ".join(str(value.get(k) or "").strip() for k in ("first_name", "last_name")).strip()
        if name:
            return name
        value = value.get("id")
    if is_null(value):
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) or str(value).strip().isdigit():
        return f"{LS_USER_PREFIX}{int(float(value))}"
    return str(value).strip() or None


def _ls_reviewer(ann: dict[str, Any]) -> str | None:
    who = ann.get("completed_by")
    name = _ls_user(who)
    if name is not None and not name.startswith(LS_USER_PREFIX):
        return name
    # the default export has only the user number; ``created_username`` ("First Last email, 7") names them
    created = ann.get("created_username")
    if isinstance(created, str) and created.strip():
        m = _EMAIL.search(created)
        if m:
            return m.group(0)
        head = created.rsplit(",", 1)[0].strip()
        if head:
            return head
    return name


def _labelstudio_rows(path: Path, records: list[tuple[int, Any]], problems: list[Problem],
                      info: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for n, task in records:
        if isinstance(task, dict) and not isinstance(task.get("data"), dict) and _is_labelstudio_flat(task):
            yield from _labelstudio_flat_row(n, task, info)
            continue
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            problems.append(Problem(str(path), n, "data", "expected a Label Studio task with a 'data' object"))
            continue
        data = task["data"]
        item_id = data.get("item_id", data.get("id"))
        info["recognised"] += 1
        for a_no, ann in enumerate(task.get("annotations") or [], 1):
            if not isinstance(ann, dict):
                problems.append(Problem(str(path), n, f"annotations[{a_no}]", "expected an annotation object"))
                continue
            choice: Any = None
            note = None
            for res in ann.get("result") or []:
                if not isinstance(res, dict):
                    continue
                value = res.get("value") or {}
                if res.get("from_name") == QUESTION and str(res.get("type", "choices")).lower() == "choices":
                    choices = value.get("choices") or []
                    choice = choices[0] if len(choices) == 1 else (choices or None)
                elif res.get("from_name") == NOTE:
                    texts = value.get("text") or []
                    note = " ".join(str(t) for t in texts) if isinstance(texts, list) else str(texts)
            if ann.get("was_cancelled"):
                choice = SKIP
            yield {"row": n, "id": item_id, "label": choice, "reviewer": _ls_reviewer(ann),
                   "note": note, "reviewed_at": ann.get("updated_at") or ann.get("created_at"),
                   "prompt": data.get("prompt"), "response": data.get("response"),
                   "_field": f"annotations[{a_no}].result"}


def _labelstudio_flat_row(n: int, rec: dict[str, Any], info: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """One JSON-MIN / CSV row: the task's data columns plus one annotation's outputs."""
    if not is_null(rec.get("item_id", rec.get("id"))):
        info["recognised"] += 1
    item_id = rec.get("item_id")
    item_id = rec.get("id") if is_null(item_id) else item_id
    label = rec.get(QUESTION)
    if isinstance(label, str) and label.startswith("["):  # CSV: several choices are a JSON list
        try:
            label = json.loads(label)
        except json.JSONDecodeError:
            pass
    note = rec.get(NOTE)
    if isinstance(note, list):
        note = " ".join(str(t) for t in note)
    yield {"row": n, "id": item_id, "label": label, "reviewer": _ls_user(rec.get("annotator")),
           "note": note, "reviewed_at": rec.get("updated_at") or rec.get("created_at"),
           "prompt": rec.get("prompt"), "response": rec.get("response"), "_field": QUESTION}


def _read_source(path: Path) -> tuple[Path, bytes]:
    """The file to read: ``path``, or the ``records.json`` of an Argilla ``to_disk`` directory."""
    if path.is_dir():
        inner = path / "records.json"
        if not inner.is_file():
            raise DataError([Problem(str(path), None, None, "a directory is read only as an Argilla to_disk() "
                                                            "export, and it has no records.json")],
                            context="review import")
        return inner, inner.read_bytes()
    return path, path.read_bytes()


def read_reviews(
    store: ReviewStore,
    path: str | Path,
    fmt: str | None = None,
    *,
    reviewer: str | None = None,
    errors: str = "raise",
) -> tuple[list[dict[str, Any]], list[Problem], dict[str, Any]]:
    """Parse and validate a review file against ``store``: ``(rows, problems, info)``.

    With ``errors="raise"`` any problem raises :class:`DataError` (nothing is written by anyone);
    with ``errors="skip"`` bad rows are dropped and returned as problems.
    """
    path, data = _read_source(Path(path))
    fmt = fmt or detect_export_format(path, data)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown import format {fmt!r}; expected one of {', '.join(FORMATS)}")
    problems: list[Problem] = []
    info: dict[str, Any] = {"recognised": 0, "drafts": 0, "status_unknown": 0}
    if path.name.lower().endswith(".parquet"):
        if fmt != "argilla":
            raise DataError([Problem(str(path), None, None, "a parquet review file is read as Argilla records only")],
                            context="review import")
        records = _file_records(path, "parquet", problems)
        text = ""
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DataError([Problem(str(path), None, None, f"not UTF-8 text: {exc}")],
                            context="review import") from None
        records = []
    if fmt in ("jsonl", "csv"):
        raw = list(_flat_rows(path, text, fmt, problems))
        info["recognised"] = sum(1 for r in raw if "label" in r and not is_null(r.get("id")))
    elif fmt == "argilla":
        raw = list(_argilla_rows(path, records or _json_records(path, text, problems), problems, info))
    elif path.name.lower().endswith(".csv"):
        raw = [r for n, row in _file_records(path, "csv", problems)
               for r in _labelstudio_flat_row(n, _blank_as_none(row), info)]
    else:
        raw = list(_labelstudio_rows(path, _json_records(path, text, problems), problems, info))
    if not info["recognised"] and not problems:
        raise DataError([Problem(str(path), None, None, (
            f"nothing recognisable as {fmt} reviews: no record with an item id and a label field (expected "
            "our jsonl/csv columns 'id' and 'label', Argilla records (nested or flattened 'label.responses'), "
            "or Label Studio JSON / JSON-MIN / CSV exports)"))], context="review import (nothing imported)")
    hashes = store.content_hashes()
    task = store.task
    rows: list[dict[str, Any]] = []
    unreviewed = 0
    decided: dict[tuple[str, str], tuple[int | None, Any, int]] = {}
    for r in raw:
        n = r["row"]
        label_field = r.get("_field", "label")
        row_problems = []
        item_id = r.get("id")
        item_id = None if is_null(item_id) else str(item_id).strip()
        label = r.get("label")
        if is_null(label):
            unreviewed += 1
            continue
        if isinstance(label, list):
            row_problems.append(Problem(str(path), n, label_field, f"several labels chosen {label!r}; expected one"))
        if item_id is None:
            row_problems.append(Problem(str(path), n, "id", "missing item id"))
        elif item_id not in hashes:
            row_problems.append(Problem(str(path), n, "id", f"unknown item id {item_id!r} (not in {store.path.name})"))
        value = None
        if not row_problems:
            try:
                value = _label_value(label)
            except UnknownLabelError as exc:
                row_problems.append(Problem(str(path), n, label_field, str(exc)))
        who = r.get("reviewer")
        who = reviewer if is_null(who) else str(who).strip()
        if who is None or is_null(who):
            row_problems.append(Problem(str(path), n, "reviewer", "missing reviewer (set the column or pass --reviewer)"))
        elif len(who) > MAX_REVIEWER_CHARS:
            row_problems.append(Problem(str(path), n, "reviewer", f"reviewer name has {len(who):,} characters; "
                                                                  f"at most {MAX_REVIEWER_CHARS}"))
        prompt = r.get("prompt")
        if item_id in hashes and isinstance(prompt, str):
            response = r.get("response")
            text_now = prompt if task.value == "prompt" else f"{prompt}\n\n{response or ''}"
            if text_hash(text_now) != hashes[item_id]:
                row_problems.append(Problem(str(path), n, "prompt", f"text of {item_id!r} differs from the stored item "
                                                                    "(a file from another queue?)"))
        try:
            when = _norm_time(r.get("reviewed_at") or r.get("created_at"))
        except ValueError as exc:
            row_problems.append(Problem(str(path), n, "reviewed_at", str(exc)))
            when = None
        # no row problems: item_id and who are set
        if not row_problems and value is not None and item_id is not None and who is not None:
            key = (item_id, who)
            prev = decided.get(key)
            if prev is not None and prev[0] is not None and prev[0] != value and (prev[1] is None or when is None):
                row_problems.append(Problem(
                    str(path), n, label_field,
                    f"{who!r} labels {item_id!r} {LABEL_NAMES[value]} here but {LABEL_NAMES[prev[0]]} in row {prev[2]}, "
                    "without times to tell which is the correction"))
            else:
                decided[key] = (value, when, n)
        if row_problems:
            problems.extend(row_problems)
            continue
        note = r.get("note")
        rows.append({"row": n, "item_id": item_id, "label": label, "reviewer": who,
                     "note": None if is_null(note) else str(note), "created_at": when})
    warnings = []
    if info["status_unknown"]:
        warnings.append(
            f"{info['status_unknown']} Argilla response(s) carry no status (records.to_json / to_disk drop it): "
            "read those with a value as submitted and those without as discarded, so a draft cannot be told "
            "from a submission; export with records.to_datasets() or records.to_list(flatten=True) to keep it")
    info = {"format": fmt, "rows_read": len(raw), "unreviewed": unreviewed, "drafts_ignored": info["drafts"],
            "warnings": warnings, "sha256": hashlib.sha256(data).hexdigest()}
    if problems and errors == "raise":
        raise DataError(problems, context=f"review import of {path} (nothing imported)")
    return rows, problems, info


def import_reviews(
    store: ReviewStore,
    path: str | Path,
    fmt: str | None = None,
    *,
    reviewer: str | None = None,
    errors: str = "raise",
    progress: Callable[[int, int], None] | None = None,
    progress_every: int = 1000,
) -> dict[str, Any]:
    """Validate then store a review file in one transaction (see the module docstring)."""
    path = Path(path)
    rows, problems, info = read_reviews(store, path, fmt, reviewer=reviewer, errors=errors)
    # the file *and* the reviewer it was imported for: the same file imported again for another
    # --reviewer is another set of decisions (rows naming their reviewer dedupe as before)
    key = info["sha256"] if reviewer is None else hashlib.sha256(
        f"{info['sha256']}\0reviewer={reviewer.strip()}".encode("utf-8")).hexdigest()
    result = store.import_reviews(rows, source_hash=key, path=str(path), fmt=info["format"],
                                  progress=progress, progress_every=progress_every)
    return {**info, **result, "valid_rows": len(rows), "problems": [str(p) for p in problems]}
