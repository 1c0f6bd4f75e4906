"""The review queue store: one SQLite file (embedded, no server), transactional, schema-versioned.

Tables (schema version 1)

``items``        every example the loop knows: id (the example id), prompt, response, source,
                 content hash, metadata (hidden labels are never stored), ``seed_label`` for the
                 audited seed set.
``predictions``  a model's output for an item: (item, model_version) -> P(harmful), predicted
                 class, confidence, per-head probabilities, APM of the predicted class.
``routings``     one row per ``route`` call (model version, strategy, budget, counts).
``queue``        items sent to human review: routing id, rank within it, strategy score.
``reviews``      append-only: every human decision (label or skip), reviewer, time, note, where
                 it came from (web page, an imported file, a simulation), a unique dedupe key.
``pseudo``       the current pseudo-labels (argmax of the routing model, with its confidence).
``labels``       the label of each item now, with its provenance: ``seed`` / ``human`` /
                 ``pseudo`` and the details (reviewers, model version). Recomputed from the
                 rows above after every change, inside the same transaction.
``conflicts``    items whose reviews disagree (with each other or with the seed label).
``imports``      one row per imported file (its sha256): importing it again changes nothing.
``rounds``       one row per retraining round: labels used, model, metrics.

Label rules (:meth:`ReviewStore._recompute`): a reviewer's latest non-skip review is their
label (a later review by the same reviewer is their correction); if reviewers disagree, or a
reviewer disagrees with the seed label, the item gets *no* label and an open conflict instead,
until ``resolve`` records a resolution review (which wins). Otherwise human > seed > pseudo.

Durability: WAL journal with ``synchronous=FULL``, one transaction per review and one per
import, so a killed process never loses a committed review and never leaves half an import.
The file is created owner-only (0600); SQLite gives its WAL files the same mode.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import sqlite3
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, cast, overload

import numpy as np

from guardmatch.data.example import LABEL_NAMES, Example, Task, UnknownLabelError, parse_label
from guardmatch.errors import GuardmatchError
from guardmatch.storage.files import secure_open

SCHEMA_VERSION = 1
SKIP = "skip"
MAX_REVIEWER_CHARS = 100  # a reviewer name is a name, not a payload
PROVENANCES = ("seed", "human", "pseudo")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    prompt TEXT NOT NULL,
    response TEXT,
    source TEXT NOT NULL DEFAULT '',
    content_hash TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    seed_label INTEGER CHECK (seed_label IN (0, 1)),
    added_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS predictions (
    item_id TEXT NOT NULL REFERENCES items(id) ON DELETE CASCADE,
    model_version TEXT NOT NULL,
    p_harmful REAL NOT NULL,
    predicted INTEGER NOT NULL,
    confidence REAL NOT NULL,
    head_probs TEXT,
    apm REAL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (item_id, model_version)
);
CREATE TABLE IF NOT EXISTS routings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model_version TEXT NOT NULL,
    strategy TEXT NOT NULL,
    budget INTEGER NOT NULL,
    pseudo_threshold REAL NOT NULL,
    n_review INTEGER NOT NULL,
    n_pseudo INTEGER NOT NULL,
    n_untouched INTEGER NOT NULL,
    info TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS queue (
    item_id TEXT PRIMARY KEY REFERENCES items(id) ON DELETE CASCADE,
    routing_id INTEGER NOT NULL REFERENCES routings(id),
    rank INTEGER NOT NULL,
    priority REAL NOT NULL,
    model_version TEXT NOT NULL,
    queued_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_order ON queue (routing_id, rank);
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id TEXT NOT NULL REFERENCES items(id) ON DELETE CASCADE,
    label INTEGER CHECK (label IN (0, 1)),
    action TEXT NOT NULL CHECK (action IN ('label', 'skip', 'resolve')),
    reviewer TEXT NOT NULL CHECK (length(reviewer) > 0),
    created_at TEXT NOT NULL,
    note TEXT,
    origin TEXT NOT NULL,
    dedupe_key TEXT NOT NULL UNIQUE,
    CHECK ((action = 'skip') = (label IS NULL))
);
CREATE INDEX IF NOT EXISTS reviews_item ON reviews (item_id);
CREATE TABLE IF NOT EXISTS pseudo (
    item_id TEXT PRIMARY KEY REFERENCES items(id) ON DELETE CASCADE,
    label INTEGER NOT NULL CHECK (label IN (0, 1)),
    confidence REAL NOT NULL,
    model_version TEXT NOT NULL,
    routing_id INTEGER NOT NULL REFERENCES routings(id)
);
CREATE TABLE IF NOT EXISTS labels (
    item_id TEXT PRIMARY KEY REFERENCES items(id) ON DELETE CASCADE,
    label INTEGER NOT NULL CHECK (label IN (0, 1)),
    provenance TEXT NOT NULL CHECK (provenance IN ('seed', 'human', 'pseudo')),
    detail TEXT NOT NULL DEFAULT '{}',
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS conflicts (
    item_id TEXT PRIMARY KEY REFERENCES items(id) ON DELETE CASCADE,
    status TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
    votes TEXT NOT NULL,
    detected_at TEXT NOT NULL,
    resolved_at TEXT,
    resolution TEXT
);
CREATE TABLE IF NOT EXISTS imports (
    source_hash TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    format TEXT NOT NULL,
    rows INTEGER NOT NULL,
    added INTEGER NOT NULL,
    imported_at TEXT NOT NULL,
    report TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS rounds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    output_dir TEXT NOT NULL,
    model_dir TEXT,
    model_version TEXT,
    labels_file TEXT NOT NULL,
    labels_hash TEXT NOT NULL,
    labels_used TEXT NOT NULL,
    pool_size INTEGER NOT NULL,
    metrics TEXT NOT NULL DEFAULT '{}',
    config TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed'))
);
"""


class StoreError(GuardmatchError, ValueError):
    """A store that cannot be opened, an operation that would corrupt it, or a bad review."""


class UnknownItemError(StoreError, KeyError):
    """An item id that is not in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def _label_value(label: Any) -> int | None:
    """0/1 for a label, None for ``skip``; :class:`UnknownLabelError` for anything else (null too)."""
    if isinstance(label, str) and label.strip().lower() == SKIP:
        return None
    try:
        value = parse_label(label)
    except UnknownLabelError:
        raise UnknownLabelError(f"unknown label {label!r} (expected harmful, unharmful or skip; "
                                "also unsafe/safe, 1/0)") from None
    if value is None:
        raise UnknownLabelError(f"empty label {label!r} (expected harmful, unharmful or skip)")
    return value


def review_key(item_id: str, reviewer: str, label: int | str | None, created_at: str | None, extra: str = "") -> str:
    """Dedupe key of a review: the same decision by the same person at the same time is stored once.

    ``label`` is 0/1, None for a skip, or ``"resolve:<label>"`` for a resolution."""
    payload = json.dumps([item_id, reviewer, label, created_at, extra], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _rowid(cur: sqlite3.Cursor) -> int:
    """The rowid of the row the INSERT just run on ``cur`` wrote."""
    if cur.lastrowid is None:
        raise StoreError("the INSERT wrote no row")
    return int(cur.lastrowid)


@dataclass
class ReviewOutcome:
    """What storing one review did."""

    item_id: str
    stored: bool  # False: an identical review was already stored
    label: str | None  # the item's label afterwards (None: none, e.g. an open conflict)
    provenance: str | None
    conflict: dict[str, Any] | None = None  # the open conflict, if the item has one now
    review_id: int | None = None


@dataclass
class QueueItem:
    item_id: str
    prompt: str
    response: str | None
    p_harmful: float | None
    predicted: str | None
    model_version: str | None
    priority: float
    position: int  # 1-based position in the queue order
    total: int
    label: str | None = None
    provenance: str | None = None
    reviews: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ReviewStore:
    """A review queue in one SQLite file. Open with :meth:`open`; use as a context manager."""

    def __init__(self, path: str | Path, conn: sqlite3.Connection):
        self.path = Path(path)
        self.conn = conn

    # ------------------------------------------------------------------ open / create
    @classmethod
    def open(cls, path: str | Path, *, task: Task | str | None = None, create: bool = True) -> "ReviewStore":
        """Open (or create, owner-only) a store. ``task`` is fixed at creation and checked after."""
        path = Path(path)
        existed = path.exists() and path.stat().st_size > 0
        if not existed:
            if not create:
                raise FileNotFoundError(f"{path}: no review store here")
            with secure_open(path, "a"):
                pass
        conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            store = cls(path, conn)
            store._check_foreign()  # before touching the journal mode of somebody else's database
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{path}: could not switch to WAL journaling (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            store._init_schema(task)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"{path}: not a guardmatch review store ({exc})") from None
        except BaseException:
            conn.close()
            raise
        return store

    def _check_foreign(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if version == 0 and tables - {"sqlite_sequence"}:
            raise StoreError(f"{self.path}: an SQLite file, but not a guardmatch review store")
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema version {version} is newer than this guardmatch "
                             f"({SCHEMA_VERSION}); upgrade guardmatch")

    def _init_schema(self, task: Task | str | None) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            with self.transaction():
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        self.conn.execute(stmt)
                self.conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                self.conn.execute("INSERT INTO meta VALUES ('created_at', ?)", (now(),))
                self.conn.execute("INSERT INTO meta VALUES ('task', ?)", (Task(task or Task.PROMPT).value,))
                self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif task is not None and Task(task).value != self.task.value:
            raise StoreError(f"{self.path}: this store holds the {self.task.value} task, not {Task(task).value}")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "ReviewStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rollback on any error): all or nothing."""
        if self.conn.in_transaction:
            yield self.conn
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # ------------------------------------------------------------------ meta
    @overload
    def get_meta(self, key: str, default: str) -> str: ...

    @overload
    def get_meta(self, key: str, default: None = None) -> str | None: ...

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @property
    def task(self) -> Task:
        return Task(self.get_meta("task", "prompt"))

    # ------------------------------------------------------------------ items
    def add_items(self, examples: Iterable[Example], *, seed: bool = False) -> dict[str, int]:
        """Insert examples (idempotent by id). ``seed=True`` stores their labels as audited seed labels.

        An id already stored with *different* text is an error (two pools mixed up); nothing is
        written then.
        """
        task = self.task
        counts = {"added": 0, "existing": 0, "seed_labels": 0}
        with self.transaction() as c:
            for ex in examples:
                h = ex.content_hash(task)
                row = c.execute("SELECT content_hash, seed_label FROM items WHERE id = ?", (ex.id,)).fetchone()
                seed_label = ex.label if seed else None
                if seed and seed_label is None:
                    raise StoreError(f"seed example {ex.id!r} has no label")
                if row is not None:
                    if row["content_hash"] != h:
                        raise StoreError(f"item {ex.id!r} is already stored with different text "
                                         "(ids must identify one example)")
                    counts["existing"] += 1
                    if seed and row["seed_label"] != seed_label:
                        c.execute("UPDATE items SET seed_label = ? WHERE id = ?", (seed_label, ex.id))
                        counts["seed_labels"] += 1
                        self._recompute(ex.id)
                    continue
                meta = {k: v for k, v in ex.metadata.items() if k != "hidden_label"}
                c.execute(
                    "INSERT INTO items (id, prompt, response, source, content_hash, metadata, seed_label, added_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (ex.id, ex.prompt, ex.response, ex.source or "", h, json.dumps(meta, ensure_ascii=False,
                                                                                    default=str),
                     seed_label, now()),
                )
                counts["added"] += 1
                if seed:
                    counts["seed_labels"] += 1
                    self._recompute(ex.id)
        return counts

    def item(self, item_id: str) -> Example | None:
        row = self.conn.execute("SELECT * FROM items WHERE id = ?", (item_id,)).fetchone()
        return None if row is None else self._example(row)

    def _example(self, row: sqlite3.Row, label: int | None = None) -> Example:
        return Example(id=row["id"], prompt=row["prompt"], response=row["response"], label=label,
                       source=row["source"], metadata=json.loads(row["metadata"] or "{}"))

    def items(self, ids: Sequence[str] | None = None) -> list[Example]:
        """Stored examples (unlabeled objects), in insertion order or the order of ``ids``."""
        if ids is None:
            return [self._example(r) for r in self.conn.execute("SELECT * FROM items ORDER BY rowid")]
        out = []
        for i in ids:
            ex = self.item(i)
            if ex is None:
                raise UnknownItemError(f"unknown item id {i!r}")
            out.append(ex)
        return out

    def content_hashes(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.conn.execute("SELECT id, content_hash FROM items")}

    # ------------------------------------------------------------------ predictions and routing
    def add_routing(self, scores: Any, routing: Any, *, budget: int, info: dict[str, Any] | None = None) -> int:
        """Store a scored pool and its routing in one transaction; returns the routing id.

        Every scored item gets a prediction row; the review picks join the queue (after what is
        already queued); the pseudo set replaces the previous pseudo-labels.
        """
        version = scores.model_version or "unknown"
        t = now()
        with self.transaction() as c:
            missing = [i for i in scores.ids if c.execute("SELECT 1 FROM items WHERE id = ?", (i,)).fetchone() is None]
            if missing:
                raise StoreError(f"{len(missing)} scored id(s) are not items of this store: {missing[:5]}")
            cur = c.execute(
                "INSERT INTO routings (model_version, strategy, budget, pseudo_threshold, n_review, n_pseudo,"
                " n_untouched, info, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (version, routing.strategy, int(budget), float(routing.pseudo_threshold), len(routing.review),
                 len(routing.pseudo), len(routing.untouched), json.dumps(info or {}, default=str), t),
            )
            rid = _rowid(cur)
            hp = scores.head_probs
            for k, item_id in enumerate(scores.ids):
                apm = None if scores.apm is None or not np.isfinite(scores.apm[k]) else float(scores.apm[k])
                c.execute(
                    "INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (item_id, version, float(scores.probs[k, 1]), int(scores.probs[k].argmax()),
                     float(scores.probs[k].max()),
                     None if hp is None else json.dumps(np.round(hp[:, k, 1], 6).tolist()), apm, t),
                )
            for rank, (k, prio) in enumerate(zip(routing.review, routing.priority)):
                c.execute("INSERT INTO queue VALUES (?, ?, ?, ?, ?, ?)",
                          (scores.ids[k], rid, rank, float(prio), version, t))
            old_pseudo = [r[0] for r in c.execute("SELECT item_id FROM pseudo")]
            c.execute("DELETE FROM pseudo")
            for k in routing.pseudo:
                c.execute("INSERT INTO pseudo VALUES (?, ?, ?, ?, ?)",
                          (scores.ids[k], int(scores.probs[k].argmax()), float(scores.probs[k].max()), version, rid))
            for item_id in set(old_pseudo) | {scores.ids[k] for k in routing.pseudo}:
                self._recompute(item_id)
        return rid

    def routing_exclusions(self) -> set[str]:
        """Ids that must not be routed again: labeled by a person or the seed, in conflict, or queued."""
        rows = self.conn.execute(
            "SELECT item_id FROM labels WHERE provenance IN ('seed', 'human')"
            " UNION SELECT item_id FROM conflicts WHERE status = 'open'"
            " UNION SELECT item_id FROM queue"
        )
        return {r[0] for r in rows}

    def routing_candidates(self) -> list[Example]:
        """The items a routing round scores: every item not in :meth:`routing_exclusions`, in insertion order."""
        excluded = self.routing_exclusions()
        return [ex for ex in self.items() if ex.id not in excluded]

    # ------------------------------------------------------------------ reviews
    def add_review(
        self,
        item_id: str,
        label: Any,
        reviewer: str,
        *,
        note: str | None = None,
        created_at: str | None = None,
        origin: str = "web",
        resolve: bool = False,
        dedupe_extra: str = "",
    ) -> ReviewOutcome:
        """Store one decision (``harmful`` / ``unharmful`` / ``skip``) in its own transaction.

        Raises :class:`~guardmatch.data.example.UnknownLabelError` for an unknown label and
        ``KeyError`` for an unknown item; nothing is written then.
        """
        with self.transaction():
            return self._insert_review(item_id, label, reviewer, note=note, created_at=created_at, origin=origin,
                                       resolve=resolve, dedupe_extra=dedupe_extra)

    def _insert_review(self, item_id: str, label: Any, reviewer: str, *, note: str | None, created_at: str | None,
                       origin: str, resolve: bool = False, dedupe_extra: str = "",
                       dedupe_time: str | None = "__same__") -> ReviewOutcome:
        c = self.conn
        reviewer = (reviewer or "").strip()
        if not reviewer:
            raise StoreError("a review needs a reviewer name")
        if len(reviewer) > MAX_REVIEWER_CHARS:
            raise StoreError(f"reviewer name has {len(reviewer):,} characters; at most {MAX_REVIEWER_CHARS}")
        if c.execute("SELECT 1 FROM items WHERE id = ?", (item_id,)).fetchone() is None:
            raise UnknownItemError(f"unknown item id {item_id!r}")
        value = _label_value(label)
        if resolve and value is None:
            raise StoreError("a resolution needs a label, not skip")
        action = "resolve" if resolve else ("skip" if value is None else "label")
        stamp = created_at or now()
        key = review_key(item_id, reviewer, value if action != "resolve" else f"resolve:{value}",
                         stamp if dedupe_time == "__same__" else dedupe_time, dedupe_extra)
        cur = c.execute(
            "INSERT OR IGNORE INTO reviews (item_id, label, action, reviewer, created_at, note, origin, dedupe_key)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (item_id, value, action, reviewer, stamp, note or None, origin, key),
        )
        stored = cur.rowcount == 1
        if stored:
            self._recompute(item_id)
        lab = c.execute("SELECT label, provenance FROM labels WHERE item_id = ?", (item_id,)).fetchone()
        conflict = self.conflict(item_id)
        return ReviewOutcome(
            item_id=item_id, stored=stored,
            label=LABEL_NAMES[lab["label"]] if lab else None, provenance=lab["provenance"] if lab else None,
            conflict=conflict if conflict and conflict["status"] == "open" else None,
            review_id=_rowid(cur) if stored else None,
        )

    def _recompute(self, item_id: str) -> None:
        """Derive the item's label (and conflict state) from seed, reviews and pseudo-labels."""
        c = self.conn
        t = now()
        seed = c.execute("SELECT seed_label FROM items WHERE id = ?", (item_id,)).fetchone()["seed_label"]
        reviews = c.execute(
            "SELECT id, label, action, reviewer, created_at FROM reviews WHERE item_id = ? ORDER BY created_at, id",
            (item_id,),
        ).fetchall()
        resolution = [r for r in reviews if r["action"] == "resolve"]
        latest: dict[str, sqlite3.Row] = {}
        for r in reviews:
            if r["action"] == "label":
                latest[r["reviewer"]] = r  # later reviews by the same reviewer are their corrections
        votes = {name: LABEL_NAMES[r["label"]] for name, r in latest.items()}
        if seed is not None:
            votes = {"(seed)": LABEL_NAMES[seed], **votes}
        existing = c.execute("SELECT status FROM conflicts WHERE item_id = ?", (item_id,)).fetchone()
        label: int | None = None
        provenance = None
        detail: dict[str, Any] = {}
        if resolution:
            r = resolution[-1]
            label, provenance = r["label"], "human"
            detail = {"resolved_by": r["reviewer"], "review_id": r["id"], "votes": votes}
            if existing is not None and existing["status"] == "open":
                c.execute("UPDATE conflicts SET status = 'resolved', resolved_at = ?, resolution = ? WHERE item_id = ?",
                          (t, f"resolved by {r['reviewer']}: {LABEL_NAMES[r['label']]}", item_id))
        elif len(set(votes.values())) > 1:
            c.execute(
                "INSERT INTO conflicts (item_id, status, votes, detected_at) VALUES (?, 'open', ?, ?)"
                " ON CONFLICT(item_id) DO UPDATE SET status = 'open', votes = excluded.votes,"
                " resolved_at = NULL, resolution = NULL",
                (item_id, json.dumps(votes, ensure_ascii=False), t),
            )
            c.execute("DELETE FROM labels WHERE item_id = ?", (item_id,))
            return
        else:
            if existing is not None and existing["status"] == "open":
                c.execute("UPDATE conflicts SET status = 'resolved', resolved_at = ?, resolution = ? WHERE item_id = ?",
                          (t, "reviews agree after a correction", item_id))
            if latest:
                label = next(iter(latest.values()))["label"]
                provenance = "human"
                detail = {"reviewers": sorted(latest), "review_ids": sorted(r["id"] for r in latest.values())}
                if seed is not None:
                    detail["agrees_with_seed"] = True
            elif seed is not None:
                label, provenance = seed, "seed"
            else:
                p = c.execute("SELECT label, confidence, model_version, routing_id FROM pseudo WHERE item_id = ?",
                              (item_id,)).fetchone()
                if p is not None:
                    label, provenance = p["label"], "pseudo"
                    detail = {"model_version": p["model_version"], "confidence": p["confidence"],
                              "routing_id": p["routing_id"]}
        if label is None:
            c.execute("DELETE FROM labels WHERE item_id = ?", (item_id,))
            return
        c.execute(
            "INSERT INTO labels VALUES (?, ?, ?, ?, ?) ON CONFLICT(item_id) DO UPDATE SET label = excluded.label,"
            " provenance = excluded.provenance, detail = excluded.detail, updated_at = excluded.updated_at",
            (item_id, int(label), provenance, json.dumps(detail, ensure_ascii=False), t),
        )

    def resolve(self, item_id: str, label: Any, reviewer: str, note: str | None = None) -> ReviewOutcome:
        """Settle an item's conflict with a final label (stored as a ``resolve`` review)."""
        return self.add_review(item_id, label, reviewer, note=note, origin="resolve", resolve=True)

    def reviews(self, item_id: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT * FROM reviews" + (" WHERE item_id = ?" if item_id else "") + " ORDER BY id"
        rows = self.conn.execute(q, (item_id,) if item_id else ()).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["label"] = LABEL_NAMES[d["label"]] if d["label"] is not None else None
            out.append(d)
        return out

    def conflict(self, item_id: str) -> dict[str, Any] | None:
        r = self.conn.execute("SELECT * FROM conflicts WHERE item_id = ?", (item_id,)).fetchone()
        if r is None:
            return None
        d = dict(r)
        d["votes"] = json.loads(d["votes"])
        return d

    def conflicts(self, status: str | None = "open") -> list[dict[str, Any]]:
        q = "SELECT item_id FROM conflicts" + (" WHERE status = ?" if status else "") + " ORDER BY detected_at"
        # every id comes from the conflicts table, so each lookup finds its row
        return [cast(dict[str, Any], self.conflict(r[0])) for r in self.conn.execute(q, (status,) if status else ())]

    # ------------------------------------------------------------------ labels
    def labels(self, provenance: Sequence[str] = PROVENANCES) -> dict[str, tuple[int, str]]:
        """``{item_id: (label, provenance)}`` for the given provenances."""
        bad = set(provenance) - set(PROVENANCES)
        if bad:
            raise StoreError(f"unknown provenance {sorted(bad)}; expected {PROVENANCES}")
        marks = ",".join("?" * len(provenance))
        rows = self.conn.execute(f"SELECT item_id, label, provenance FROM labels WHERE provenance IN ({marks})",
                                 tuple(provenance))
        return {r[0]: (int(r[1]), r[2]) for r in rows}

    def label_detail(self, item_id: str) -> dict[str, Any] | None:
        r = self.conn.execute("SELECT * FROM labels WHERE item_id = ?", (item_id,)).fetchone()
        if r is None:
            return None
        return {"label": LABEL_NAMES[r["label"]], "provenance": r["provenance"], "detail": json.loads(r["detail"]),
                "updated_at": r["updated_at"]}

    # ------------------------------------------------------------------ queue
    def _queue_rows(self) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT q.item_id, q.priority, q.model_version, q.routing_id, q.rank FROM queue q"
            " ORDER BY q.routing_id, q.rank"
        ).fetchall()

    def queue_item(self, item_id: str, position: int | None = None, total: int | None = None) -> QueueItem:
        row = self.conn.execute(
            "SELECT i.*, q.priority, q.model_version AS qmv FROM items i LEFT JOIN queue q ON q.item_id = i.id"
            " WHERE i.id = ?", (item_id,)
        ).fetchone()
        if row is None:
            raise UnknownItemError(f"unknown item id {item_id!r}")
        version = row["qmv"]
        pred = None
        if version:
            pred = self.conn.execute("SELECT * FROM predictions WHERE item_id = ? AND model_version = ?",
                                     (item_id, version)).fetchone()
        if pred is None:
            pred = self.conn.execute("SELECT * FROM predictions WHERE item_id = ? ORDER BY created_at DESC LIMIT 1",
                                     (item_id,)).fetchone()
        lab = self.label_detail(item_id)
        if position is None or total is None:
            order = [r["item_id"] for r in self._queue_rows()]
            total = len(order)
            position = order.index(item_id) + 1 if item_id in order else 0
        return QueueItem(
            item_id=item_id, prompt=row["prompt"], response=row["response"],
            p_harmful=None if pred is None else float(pred["p_harmful"]),
            predicted=None if pred is None else LABEL_NAMES[pred["predicted"]],
            model_version=None if pred is None else pred["model_version"],
            priority=float(row["priority"]) if row["priority"] is not None else 0.0,
            position=position, total=total,
            label=lab["label"] if lab else None, provenance=lab["provenance"] if lab else None,
            reviews=[{k: r[k] for k in ("label", "action", "reviewer", "created_at", "note")}
                     for r in self.reviews(item_id)],
        )

    def next_item(self, reviewer: str, exclude: Sequence[str] = ()) -> QueueItem | None:
        """The first queued item this reviewer has not decided on and nobody has labeled yet."""
        rows = self._queue_rows()
        done = self._done_ids()
        mine = {r[0] for r in self.conn.execute("SELECT DISTINCT item_id FROM reviews WHERE reviewer = ?", (reviewer,))}
        skip = set(exclude)
        for pos, r in enumerate(rows, 1):
            i = r["item_id"]
            if i in done or i in mine or i in skip:
                continue
            return self.queue_item(i, pos, len(rows))
        return None

    def _done_ids(self) -> set[str]:
        rows = self.conn.execute(
            "SELECT q.item_id FROM queue q JOIN labels l ON l.item_id = q.item_id WHERE l.provenance = 'human'"
            " UNION SELECT q.item_id FROM queue q JOIN conflicts c ON c.item_id = q.item_id WHERE c.status = 'open'"
        )
        return {r[0] for r in rows}

    def progress(self, reviewer: str | None = None) -> dict[str, Any]:
        """Queue progress: total, labeled, in conflict, skipped (by ``reviewer``), remaining."""
        total = self.conn.execute("SELECT COUNT(*) FROM queue").fetchone()[0]
        labeled = self.conn.execute(
            "SELECT COUNT(*) FROM queue q JOIN labels l ON l.item_id = q.item_id WHERE l.provenance = 'human'"
        ).fetchone()[0]
        conflicted = self.conn.execute(
            "SELECT COUNT(*) FROM queue q JOIN conflicts c ON c.item_id = q.item_id WHERE c.status = 'open'"
        ).fetchone()[0]
        out = {"total": total, "labeled": labeled, "conflicts": conflicted}
        if reviewer:
            done = self._done_ids()
            skipped = {r[0] for r in self.conn.execute(
                "SELECT DISTINCT r.item_id FROM reviews r JOIN queue q ON q.item_id = r.item_id WHERE r.reviewer = ?",
                (reviewer,))} - done
            out["skipped"] = len(skipped)
            out["remaining"] = total - len(done) - len(skipped)
        else:
            out["remaining"] = total - labeled - conflicted
        return out

    def pending_ids(self) -> list[str]:
        """Queued items without a human label or an open conflict, in queue order."""
        done = self._done_ids()
        return [r["item_id"] for r in self._queue_rows() if r["item_id"] not in done]

    def queue_ids(self) -> list[str]:
        return [r["item_id"] for r in self._queue_rows()]

    # ------------------------------------------------------------------ imports
    def import_seen(self, source_hash: str) -> dict[str, Any] | None:
        r = self.conn.execute("SELECT * FROM imports WHERE source_hash = ?", (source_hash,)).fetchone()
        return None if r is None else {**dict(r), "report": json.loads(r["report"])}

    def import_reviews(
        self,
        rows: Sequence[dict[str, Any]],
        *,
        source_hash: str,
        path: str,
        fmt: str,
        progress: Callable[[int, int], None] | None = None,
        progress_every: int = 1000,
    ) -> dict[str, Any]:
        """Store validated review rows in ONE transaction, recording the file as imported.

        ``rows``: dicts with ``item_id, label, reviewer, created_at, note, row``. Returns counts of
        stored / duplicate reviews, relabels (a reviewer changing their own label) and new
        conflicts. A file already imported changes nothing.
        """
        seen = self.import_seen(source_hash)
        if seen is not None:
            return {"already_imported": True, "imported_at": seen["imported_at"], "path": seen["path"],
                    "stored": 0, "duplicates": len(rows), "relabeled": [], "conflicts": []}
        report: dict[str, Any] = {"already_imported": False, "stored": 0, "duplicates": 0, "relabeled": [],
                                  "conflicts": [], "skips": 0}
        origin = f"import:{Path(path).name}:{source_hash[:12]}"
        with self.transaction() as c:
            for n, row in enumerate(rows, 1):
                before = c.execute(
                    "SELECT label FROM reviews WHERE item_id = ? AND reviewer = ? AND action = 'label'"
                    " ORDER BY created_at DESC, id DESC LIMIT 1", (row["item_id"], row["reviewer"]),
                ).fetchone()
                had_conflict = c.execute("SELECT status FROM conflicts WHERE item_id = ?", (row["item_id"],)).fetchone()
                outcome = self._insert_review(
                    row["item_id"], row["label"], row["reviewer"], note=row.get("note"),
                    created_at=row.get("created_at"), origin=origin,
                    dedupe_time=row.get("created_at"),  # no timestamp in the file: same decision = same review
                )
                if not outcome.stored:
                    report["duplicates"] += 1
                else:
                    report["stored"] += 1
                    value = _label_value(row["label"])
                    if value is None:
                        report["skips"] += 1
                    elif before is not None and before["label"] != value:
                        report["relabeled"].append({"item_id": row["item_id"], "reviewer": row["reviewer"],
                                                    "from": LABEL_NAMES[before["label"]], "to": LABEL_NAMES[value],
                                                    "row": row.get("row")})
                    if outcome.conflict and (had_conflict is None or had_conflict["status"] != "open"):
                        report["conflicts"].append({"item_id": row["item_id"], "votes": outcome.conflict["votes"],
                                                    "row": row.get("row")})
                if progress and n % progress_every == 0:
                    progress(n, len(rows))
            c.execute("INSERT INTO imports VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (source_hash, str(path), fmt, len(rows), report["stored"], now(),
                       json.dumps(report, ensure_ascii=False, default=str)))
        return report

    # ------------------------------------------------------------------ rounds
    def start_round(self, *, output_dir: str, labels_file: str, labels_hash: str, labels_used: dict[str, Any],
                    pool_size: int, config: dict[str, Any]) -> int:
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO rounds (created_at, output_dir, labels_file, labels_hash, labels_used, pool_size,"
                " config, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'running')",
                (now(), output_dir, labels_file, labels_hash, json.dumps(labels_used), pool_size,
                 json.dumps(config, default=str)),
            )
            return _rowid(cur)

    def finish_round(self, round_id: int, *, model_dir: str | None, model_version: str | None,
                     metrics: dict[str, Any], status: str = "done") -> None:
        with self.transaction() as c:
            c.execute("UPDATE rounds SET model_dir = ?, model_version = ?, metrics = ?, status = ? WHERE id = ?",
                      (model_dir, model_version, json.dumps(metrics, default=str), status, round_id))

    def rounds(self) -> list[dict[str, Any]]:
        out = []
        for r in self.conn.execute("SELECT * FROM rounds ORDER BY id"):
            d = dict(r)
            for k in ("labels_used", "metrics", "config"):
                d[k] = json.loads(d[k])
            out.append(d)
        return out

    def routings(self) -> list[dict[str, Any]]:
        return [{**dict(r), "info": json.loads(r["info"])} for r in self.conn.execute("SELECT * FROM routings ORDER BY id")]

    # ------------------------------------------------------------------ summary
    def status(self) -> dict[str, Any]:
        c = self.conn
        by_prov = {p: 0 for p in PROVENANCES}
        for r in c.execute("SELECT provenance, COUNT(*) FROM labels GROUP BY provenance"):
            by_prov[r[0]] = r[1]
        return {
            "path": str(self.path),
            "schema_version": int(self.get_meta("schema_version", "0")),
            "task": self.task.value,
            "items": c.execute("SELECT COUNT(*) FROM items").fetchone()[0],
            "labels": by_prov,
            "reviews": c.execute("SELECT COUNT(*) FROM reviews").fetchone()[0],
            "queue": self.progress(),
            "open_conflicts": c.execute("SELECT COUNT(*) FROM conflicts WHERE status = 'open'").fetchone()[0],
            "imports": c.execute("SELECT COUNT(*) FROM imports").fetchone()[0],
            "routings": c.execute("SELECT COUNT(*) FROM routings").fetchone()[0],
            "rounds": c.execute("SELECT COUNT(*) FROM rounds").fetchone()[0],
        }

    def integrity_check(self) -> str:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0]
