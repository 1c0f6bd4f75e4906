"""Review exchange files: export a queue for people (or other tools), import their decisions.

Formats (files only, no server needed):

``jsonl`` / ``csv``
    One row per item: ``id, prompt, response, p_harmful, predicted, confidence, model_version,
    strategy, priority, label, reviewer, note, reviewed_at``. Reviewers fill ``label``
    (harmful / unharmful / skip; any spelling :func:`~guardmatch.data.example.parse_label` knows),
    ``reviewer`` (or pass ``reviewer=`` on import) and optionally ``note`` / ``reviewed_at``.
    Rows with an empty label are not reviewed yet and are ignored.
``argilla``
    Argilla v2 records as written by ``dataset.records.to_json(path)`` (a JSON list; JSONL is read
    too): ``{"id", "fields": {"prompt", "response"}, "metadata", "suggestions": {"label":
    {"value", "score", "agent"}}, "responses": {"label": [{"value", "user_id", "status"}]},
    "vectors", "status", "_server_id"}``. The suggestion is the model's predicted label, its
    ``score`` the model's probability of that label, its ``agent`` the model version. The Argilla
    dataset needs fields ``prompt`` (and ``response``), a ``LabelQuestion`` named ``label`` with
    labels ``harmful``/``unharmful`` and optionally a ``TextQuestion`` named ``note``. On import,
    submitted responses are reviews, ``discarded`` ones are skips, drafts are ignored.
``labelstudio``
    Label Studio tasks (a JSON list): ``{"data": {"item_id", "prompt", "response", "p_harmful"},
    "predictions": [{"model_version", "score", "result": [{"from_name": "label", "to_name":
    "prompt", "type": "choices", "value": {"choices": ["harmful"]}}]}]}``; the labeling config
    that matches is written next to it (``<name>.label_config.xml``). On import (Label Studio's
    JSON export) every annotation is a review by its ``completed_by``; cancelled annotations are
    skips; a ``note`` TextArea becomes the note.

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
import io
import json
from pathlib import Path
from typing import Any, Callable, Iterable

from guardmatch.data.example import LABEL_NAMES, UnknownLabelError, is_null, text_hash
from guardmatch.data.validation import DataError, Problem
from guardmatch.review.store import MAX_REVIEWER_CHARS, SKIP, ReviewStore, _label_value
from guardmatch.security import audit_log, secure_open

FORMATS = ("jsonl", "csv", "argilla", "labelstudio")
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
        raise ValueError(f"unknown selection {which!r}; expected 'pending' or 'queue'")
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


def export_queue(store: ReviewStore, path: str | Path, fmt: str, *, which: str = "pending") -> dict[str, Any]:
    """Write the queue (``pending`` items, or the whole ``queue``) as ``fmt``; audited. Returns a summary."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
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
                fields = {"prompt": r["prompt"]}
                if with_response:
                    fields["response"] = r["response"] or ""
                suggestions = {}
                if r["predicted"] is not None:
                    suggestions[QUESTION] = {"value": r["predicted"], "score": r["confidence"],
                                             "agent": r["model_version"]}
                out.append({
                    "id": r["id"], "fields": fields,
                    "metadata": {"p_harmful": r["p_harmful"], "strategy": r["strategy"], "priority": r["priority"]},
                    "suggestions": suggestions, "responses": {}, "vectors": {}, "status": "pending",
                    "_server_id": None,
                })
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
            raise ValueError(f"not an ISO-8601 time: {value!r}") from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=_dt.timezone.utc)
    return t.astimezone(_dt.timezone.utc).isoformat(timespec="microseconds")


def detect_format(path: Path, data: bytes) -> str:
    name = path.name.lower()
    if name.endswith(".csv"):
        return "csv"
    text = data.decode("utf-8", errors="replace").lstrip()
    first: Any = None
    try:
        if text.startswith("["):
            items = json.loads(text)
            first = items[0] if items else {}
        else:
            line = next((ln for ln in text.splitlines() if ln.strip()), "{}")
            first = json.loads(line)
    except (json.JSONDecodeError, StopIteration):
        raise DataError([Problem(str(path), None, None, "not JSON/JSONL (and not a .csv file): cannot tell the format")],
                        context="review import") from None
    if isinstance(first, dict):
        if "fields" in first and ("responses" in first or "suggestions" in first):
            return "argilla"
        if "data" in first and isinstance(first["data"], dict):
            return "labelstudio"
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
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((n, json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append(Problem(str(path), n, None, f"invalid JSON: {exc.msg}"))
    return out


def _flat_rows(path: Path, text: str, fmt: str, problems: list[Problem]) -> Iterable[dict[str, Any]]:
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "id" not in reader.fieldnames or "label" not in reader.fieldnames:
            problems.append(Problem(str(path), None, None, f"a review CSV needs columns 'id' and 'label' "
                                                           f"(found {reader.fieldnames})"))
            return
        for n, row in enumerate(reader, 2):  # row 1 is the header
            yield {"row": n, **{k: (v if v != "" else None) for k, v in row.items()}}
    else:
        for n, obj in _json_records(path, text, problems):
            if not isinstance(obj, dict):
                problems.append(Problem(str(path), n, None, "expected a JSON object"))
                continue
            yield {"row": n, **obj}


def _argilla_rows(path: Path, text: str, problems: list[Problem]) -> Iterable[dict[str, Any]]:
    for n, rec in _json_records(path, text, problems):
        if not isinstance(rec, dict):
            problems.append(Problem(str(path), n, None, "expected an Argilla record object"))
            continue
        responses = rec.get("responses") or {}
        if not isinstance(responses, dict):
            problems.append(Problem(str(path), n, "responses", "expected {question: [responses]}"))
            continue
        notes = {str(r.get("user_id")): r.get("value") for r in responses.get(NOTE, []) or [] if isinstance(r, dict)}
        fields = rec.get("fields") or {}
        for r in responses.get(QUESTION, []) or []:
            if not isinstance(r, dict):
                problems.append(Problem(str(path), n, f"responses.{QUESTION}", "expected a response object"))
                continue
            status = (r.get("status") or "submitted").lower()
            if status == "draft":
                continue
            value = SKIP if status == "discarded" else r.get("value")
            user = r.get("user_id")
            yield {"row": n, "id": rec.get("id"), "label": value, "reviewer": None if is_null(user) else str(user),
                   "note": notes.get(str(user)), "reviewed_at": r.get("updated_at") or r.get("inserted_at"),
                   "prompt": fields.get("prompt"), "response": fields.get("response"),
                   "_field": f"responses.{QUESTION}"}


def _ls_reviewer(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in ("email", "username", "id"):
            if not is_null(value.get(key)):
                return str(value[key])
        return None
    return None if is_null(value) else str(value)


def _labelstudio_rows(path: Path, text: str, problems: list[Problem]) -> Iterable[dict[str, Any]]:
    for n, task in _json_records(path, text, problems):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            problems.append(Problem(str(path), n, "data", "expected a Label Studio task with a 'data' object"))
            continue
        data = task["data"]
        item_id = data.get("item_id", data.get("id"))
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
                if res.get("from_name") == QUESTION and res.get("type", "choices") == "choices":
                    choices = value.get("choices") or []
                    choice = choices[0] if len(choices) == 1 else (choices or None)
                elif res.get("from_name") == NOTE:
                    texts = value.get("text") or []
                    note = " ".join(str(t) for t in texts) if isinstance(texts, list) else str(texts)
            if ann.get("was_cancelled"):
                choice = SKIP
            yield {"row": n, "id": item_id, "label": choice, "reviewer": _ls_reviewer(ann.get("completed_by")),
                   "note": note, "reviewed_at": ann.get("updated_at") or ann.get("created_at"),
                   "prompt": data.get("prompt"), "response": data.get("response"),
                   "_field": f"annotations[{a_no}].result"}


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
    path = Path(path)
    data = path.read_bytes()
    fmt = fmt or detect_format(path, data)
    if fmt not in FORMATS:
        raise ValueError(f"unknown import format {fmt!r}; expected one of {', '.join(FORMATS)}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError([Problem(str(path), None, None, f"not UTF-8 text: {exc}")], context="review import") from None
    problems: list[Problem] = []
    if fmt in ("jsonl", "csv"):
        raw = list(_flat_rows(path, text, fmt, problems))
    elif fmt == "argilla":
        raw = list(_argilla_rows(path, text, problems))
    else:
        raw = list(_labelstudio_rows(path, text, problems))
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
        if is_null(who):
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
        if not row_problems and value is not None:
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
    info = {"format": fmt, "rows_read": len(raw), "unreviewed": unreviewed,
            "sha256": hashlib.sha256(data).hexdigest()}
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
