"""Chat logs -> an unlabeled, PII-redacted, de-duplicated pool, streamed and resumable.

``ingest(inputs, out, config)`` writes:

* ``out`` (``pool.jsonl``): normalized JSONL, one ``Example.to_dict()`` a line
  (``{"id", "prompt", "response", "label": null, "source", "metadata": {segments..., "kind"}}``),
  0600, each line encrypted when ``$GUARDMATCH_ENCRYPTION_KEY`` is set (``guardmatch.storage``).
* ``pool.manifest.json``: pool id, config, inputs with resume offsets, counts, skip reasons,
  dedup stats, redactions per PII type, segment value counts, encryption key id.
* ``pool.ingest-state.sqlite``: offsets, counters and the dedup hashes (no text), committed in
  one transaction per checkpoint together with the pool's byte length. A killed run resumes
  from the last checkpoint: the pool is truncated to the committed length and uncommitted dedup
  rows roll back, so nothing is lost or written twice.
* ``pool.errors.jsonl``: every problem with file, line and field (never the offending text).

Order per record: parse -> drafts (chat turns) -> PII redaction -> length/language filters ->
exact/near dedup -> write. Memory is bounded by one batch of records plus SQLite's page cache.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import sqlite3
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from guardmatch.data.example import Example
from guardmatch.data.records import JsonlWriter, detect_container, progress_total, read_records
from guardmatch.data.validation import Problem
from guardmatch.errors import GuardmatchError
from guardmatch.ingest.chatlogs import Draft, record_to_drafts
from guardmatch.ingest.config import IngestConfig
from guardmatch.ingest.dedup import DedupIndex
from guardmatch.ingest.filters import TextFilter
from guardmatch.ingest.pii import PiiRedactor, apply_spans
from guardmatch.storage.audit import audit_log
from guardmatch.storage.crypto import AtRestCipher, EncryptionKeyError
from guardmatch.storage.files import secure_open, write_secure_text
from guardmatch.storage.lineage import manifest_path

MAX_SEGMENT_VALUES = 50  # distinct values counted per segment field in the manifest
MAX_PROBLEMS_KEPT = 1000  # problems kept in memory for the report (all go to errors.jsonl)


class IngestError(GuardmatchError, RuntimeError):
    """The run cannot start (existing pool with another config, changed input, ...)."""


def state_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name.removesuffix(".jsonl") + ".ingest-state.sqlite")


def errors_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name.removesuffix(".jsonl") + ".errors.jsonl")


@dataclass
class IngestReport:
    """Outcome of a run: the manifest written next to the pool, and the first problems."""

    out: Path
    manifest: dict[str, Any]
    problems: list[Problem] = field(default_factory=list)
    resumed: bool = False
    seconds: float = 0.0

    @property
    def kept(self) -> int:
        return self.manifest["counts"]["kept"]


class _Counts:
    def __init__(self, saved: dict | None = None):
        saved = saved or {}
        self.c: dict[str, Any] = {
            "records": 0, "drafts": 0, "kept": 0, "errors": 0,
            "kept_by_kind": {}, "skipped": {}, "dedup": {}, "redactions": {}, "segments": {},
            "redacted_examples": 0,
        }
        self.c.update(saved)

    def bump(self, key: str, sub: str | None = None, n: int = 1) -> None:
        if sub is None:
            self.c[key] += n
        else:
            self.c[key][sub] = self.c[key].get(sub, 0) + n

    def segment(self, meta: dict[str, Any]) -> None:
        seg = self.c["segments"]
        for k, v in meta.items():
            if k in ("turn", "context_turns", "kind"):
                continue
            vals = seg.setdefault(k, {})
            key = str(v)
            if key not in vals and len(vals) >= MAX_SEGMENT_VALUES:
                key = "<other>"
            vals[key] = vals.get(key, 0) + 1


def _config_hash(config: IngestConfig) -> str:
    return hashlib.sha256(config.model_dump_json().encode("utf-8")).hexdigest()[:16]


def _open_state(path: Path) -> sqlite3.Connection:
    if not path.exists():
        with secure_open(path, "a"):
            pass
    conn = sqlite3.connect(path, isolation_level="DEFERRED")
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, format TEXT, size INTEGER, offset INTEGER,"
        " line INTEGER, done INTEGER, records INTEGER)"
    )
    conn.commit()
    return conn


def _meta(conn: sqlite3.Connection, key: str) -> Any:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else json.loads(row[0])


def _set_meta(conn: sqlite3.Connection, key: str, value: Any) -> None:
    conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))


def _truncate(path: Path, size: int) -> None:
    if path.exists() and path.stat().st_size > size:
        with secure_open(path, "r+b") as fh:
            fh.truncate(size)


class _Run:
    """One ingest run (fresh or resumed) over the inputs."""

    def __init__(self, inputs: Sequence[Path], out: Path, config: IngestConfig, overwrite: bool,
                 progress: bool, on_checkpoint: Callable[[dict], None] | None):
        self.inputs = [Path(p) for p in inputs]
        self.out = Path(out)
        self.config = config
        self.progress = progress
        self.on_checkpoint = on_checkpoint
        for p in self.inputs:
            if not p.is_file():
                raise IngestError(f"{p}: no such file")
        state, man, errs = state_path(self.out), manifest_path(self.out), errors_path(self.out)
        if overwrite:
            for p in (self.out, state, man, errs):
                if p.exists():
                    p.unlink()
        elif self.out.exists() and not state.exists():
            raise IngestError(f"{self.out} exists and is not a resumable pool; pass overwrite=True (--overwrite)")
        self.resumed = state.exists()
        self.conn = _open_state(state)
        saved_hash = _meta(self.conn, "config_hash")
        if saved_hash is not None and saved_hash != _config_hash(config):
            raise IngestError(
                f"{self.out} was ingested with another configuration; use the same one to resume or "
                "add files, or pass --overwrite to start over"
            )
        self.pool_id = _meta(self.conn, "pool_id") or uuid.uuid4().hex
        # per-pool secret for pseudonyms: stable within the pool, unlinkable across pools; it lives
        # only in the 0600 state file (purge removes it)
        self.salt = _meta(self.conn, "pseudonym_salt") or os.urandom(32).hex()
        self.created = _meta(self.conn, "created") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        enc = _meta(self.conn, "encryption")
        self.cipher = AtRestCipher.from_env()
        if config.encrypt is True and self.cipher is None:
            raise EncryptionKeyError("encrypt=True but GUARDMATCH_ENCRYPTION_KEY is not set")
        if config.encrypt is False:
            self.cipher = None
        if enc is not None:  # a resumed pool keeps its first run's choice
            if enc["enabled"] and (self.cipher is None or self.cipher.key_id != enc["key_id"]):
                raise EncryptionKeyError(
                    f"{self.out} is encrypted with key {enc['key_id']}; set GUARDMATCH_ENCRYPTION_KEY to that key to resume"
                )
            if not enc["enabled"]:
                self.cipher = None
        self.encryption = {"enabled": self.cipher is not None, "key_id": self.cipher.key_id if self.cipher else None,
                           "scheme": "fernet-line" if self.cipher else None}
        self.counts = _Counts(self._load_counts(_meta(self.conn, "counts")))
        _truncate(self.out, _meta(self.conn, "pool_bytes") or 0)
        _truncate(errs, _meta(self.conn, "errors_bytes") or 0)
        self.writer = JsonlWriter(self.out, cipher=self.cipher, append=True)
        self.errors = secure_open(errs, "a")
        self.dedup = DedupIndex(self.conn, config.dedup)
        self.filter = TextFilter(config.filters)
        self.redactor = PiiRedactor(config.pii)
        self.problems: list[Problem] = []
        for p in self.inputs:
            fmt = config.format or detect_container(p)
            self.conn.execute(
                "INSERT OR IGNORE INTO files VALUES (?, ?, ?, 0, 0, 0, 0)", (str(p.resolve()), fmt, p.stat().st_size)
            )
        _set_meta(self.conn, "pool_id", self.pool_id)
        _set_meta(self.conn, "pseudonym_salt", self.salt)
        _set_meta(self.conn, "created", self.created)
        _set_meta(self.conn, "config_hash", _config_hash(config))
        _set_meta(self.conn, "encryption", self.encryption)
        self.conn.commit()
        self._last_ckpt = time.monotonic()
        self._since_ckpt = 0
        self._file_pos: dict[str, tuple[int, int, int]] = {}

    # -- problems -----------------------------------------------------------------------------
    def problem(self, p: Problem) -> None:
        self.counts.bump("errors")
        self.counts.bump("skipped", re.split(r"[(:;]", p.message, maxsplit=1)[0].strip()[:60])
        self.errors.write(json.dumps(p.to_dict(), ensure_ascii=False) + "\n")
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(p)

    # -- one batch ------------------------------------------------------------------------------
    def process(self, drafts: list[Draft]) -> None:
        # each distinct message is redacted once, even when it reappears as context of later turns
        unique: dict[str, int] = {}
        for d in drafts:
            for t in (d.prompt, d.response, *(c for _, c in d.context)):
                if t is not None and t not in unique:
                    unique[t] = len(unique)
        texts = list(unique)
        redacted = self.redactor.redact_many(texts) if self.config.pii.enabled else [(t, Counter()) for t in texts]
        for d in drafts:
            self.counts.bump("drafts")
            prompt, c = redacted[unique[d.prompt]]
            found = Counter(c)
            response = None
            if d.response is not None:
                response, c2 = redacted[unique[d.response]]
                found.update(c2)
            if d.context:
                prompt = d.rendered_prompt(prompt, [(r, redacted[unique[t]][0]) for r, t in d.context])
            meta = self.protect_metadata(d.metadata)
            if self.config.pii.enabled:
                meta = {k: self.redact_value(v, found) for k, v in meta.items()}
            for t, n in found.items():
                self.counts.bump("redactions", t, n)
            reason = self.filter.reason(prompt if response is None else response)
            if reason is None and response is not None and len(prompt.strip()) < self.config.filters.min_chars:
                reason = "too_short"
            if reason is not None:
                self.counts.bump("skipped", reason)
                continue
            dup = self.dedup.check_and_add(d.kind, prompt if response is None else f"{prompt}\n\n{response}")
            if dup is not None:
                self.counts.bump("dedup", dup)
                self.counts.bump("skipped", f"duplicate_{dup}")
                continue
            if found:
                self.counts.bump("redacted_examples")
            meta["kind"] = d.kind
            ex = Example(id=self.protect_id(d.id, found), prompt=prompt, response=response, label=None,
                         source=self.redact_value(d.source, found) if self.config.pii.enabled else d.source, metadata=meta)
            self.writer.write(ex.to_dict())
            self.counts.bump("kept")
            self.counts.bump("kept_by_kind", d.kind)
            self.counts.segment(meta)

    def _pseudonym(self, value: str) -> str:
        return hmac.new(bytes.fromhex(self.salt), value.encode("utf-8"), hashlib.sha256).hexdigest()[:16]

    def _spans(self, text: str) -> list:
        """PII in a short field (an id, a metadata value): patterns, and names with ``--names``."""
        if len(text) < 6:
            return []
        return self.redactor.find_all(text) if self.config.pii.names else self.redactor.find(text)

    def redact_value(self, value: Any, found: Counter) -> Any:
        """A metadata value with its PII replaced by placeholders (strings in lists/dicts too)."""
        if isinstance(value, str):
            spans = self._spans(value)
            if spans:
                found.update(s.type for s in spans)
                return apply_spans(value, spans)
            return value
        if isinstance(value, list):
            return [self.redact_value(v, found) for v in value]
        if isinstance(value, dict):
            return {k: self.redact_value(v, found) for k, v in value.items()}
        return value

    def protect_id(self, record_id: str, found: Counter) -> str:
        """The id with each PII span replaced by ``<TYPE-pseudonym>``: a keyed hash of the span, so
        ids stay unique and stable across resumes but hold no e-mail, phone or name."""
        if not self.config.pii.enabled:
            return record_id
        spans = self._spans(record_id)
        if not spans:
            return record_id
        found.update(s.type for s in spans)
        parts, pos = [], 0
        for sp in spans:
            parts += [record_id[pos:sp.start], f"<{sp.type}-{self._pseudonym(record_id[sp.start:sp.end])[:10]}>"]
            pos = sp.end
        return "".join(parts) + record_id[pos:]

    def protect_metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """Drop the ``drop`` fields; replace ``pseudonymize`` fields by a keyed hash (HMAC-SHA256)."""
        cols = self.config.columns
        meta = {k: v for k, v in metadata.items() if k not in cols.drop}
        for k in cols.pseudonymize:
            if meta.get(k) not in (None, ""):
                meta[k] = "anon-" + self._pseudonym(str(meta[k]))
        return meta

    # -- what goes to disk in plaintext ---------------------------------------------------------
    def disk_counts(self) -> dict[str, Any]:
        """The counts for the state file and the manifest. In an encrypted pool the segment values
        (metadata values: regions, names, ...) are encrypted; only fields and numbers stay readable."""
        c = dict(self.counts.c)
        if self.cipher is not None and c.get("segments"):
            seg = c["segments"]
            c["segments"] = {"encrypted": self.cipher.encrypt_line(json.dumps(seg, ensure_ascii=False)),
                             "fields": {k: {"distinct": len(v), "rows": sum(v.values())} for k, v in seg.items()}}
        return c

    def _load_counts(self, saved: dict | None) -> dict | None:
        seg = (saved or {}).get("segments")
        if isinstance(seg, dict) and "encrypted" in seg:
            if self.cipher is None:
                raise EncryptionKeyError(f"{self.out}: its counts are encrypted; set GUARDMATCH_ENCRYPTION_KEY to resume")
            saved = {**(saved or {}), "segments": json.loads(self.cipher.decrypt_line(seg["encrypted"]))}
        return saved

    # -- checkpoints ----------------------------------------------------------------------------
    def checkpoint(self, status: str = "running") -> dict:
        self.writer.flush(fsync=True)
        self.errors.flush()
        os.fsync(self.errors.fileno())
        for path, (offset, line, records) in self._file_pos.items():
            self.conn.execute("UPDATE files SET offset = ?, line = ?, records = ? WHERE path = ?",
                              (offset, line, records, path))
        _set_meta(self.conn, "counts", self.disk_counts())
        _set_meta(self.conn, "pool_bytes", self.out.stat().st_size)
        _set_meta(self.conn, "errors_bytes", errors_path(self.out).stat().st_size)
        self.conn.commit()
        manifest = self.manifest(status)
        write_secure_text(manifest_path(self.out), json.dumps(manifest, indent=2, ensure_ascii=False))
        self._last_ckpt = time.monotonic()
        self._since_ckpt = 0
        if self.on_checkpoint:
            self.on_checkpoint(manifest)
        return manifest

    def manifest(self, status: str) -> dict:
        files = [
            dict(zip(("path", "format", "size", "offset", "line", "done", "records"), r))
            for r in self.conn.execute("SELECT path, format, size, offset, line, done, records FROM files ORDER BY rowid")
        ]
        for f in files:
            f["done"] = bool(f["done"])
        b, r = self.dedup.bands if self.config.dedup.near else (None, None)
        return {
            "pool_id": self.pool_id,
            "format": "guardmatch-pool/1",
            "status": status,
            "created": self.created,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "pool": self.out.name,
            "rows": self.counts.c["kept"],
            "encryption": self.encryption,
            "inputs": files,
            "counts": self.disk_counts(),
            "dedup": {**self.config.dedup.model_dump(), "bands": b, "rows_per_band": r},
            "filters": self.config.filters.model_dump(),
            "pii": {**self.config.pii.model_dump(), "backend": "presidio-analyzer recognizers + guardmatch secret/url patterns"
                    + (" + spaCy NER" if self.config.pii.names else "")},
            "config": self.config.model_dump(mode="json"),
        }

    # -- main loop --------------------------------------------------------------------------------
    def run(self) -> dict:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

        rows = self.conn.execute("SELECT path, format, size, offset, line, done, records FROM files ORDER BY rowid").fetchall()
        wanted = {str(p.resolve()) for p in self.inputs}
        todo = [r for r in rows if r[0] in wanted and not r[5]]
        total = sum(progress_total(r[0]) for r in todo)
        with Progress(TextColumn("[bold]ingest[/] {task.description}"), BarColumn(), DownloadColumn(),
                      TransferSpeedColumn(), TextColumn("{task.fields[kept]:,} kept"), TimeRemainingColumn(),
                      disable=not self.progress, transient=False) as bar:
            task = bar.add_task("", total=total or None, kept=self.counts.c["kept"])
            done_bytes = 0
            for path, fmt, _size, offset, line, _done, records in todo:
                size_now = Path(path).stat().st_size
                if fmt != "parquet" and offset > size_now:
                    raise IngestError(f"{path}: file shrank since the last run (offset {offset} > size {size_now})")
                bar.update(task, description=Path(path).name)
                batch: list[Draft] = []
                n_records = records
                for rec in read_records(path, fmt, start=offset, start_line=line,
                                        max_line_bytes=self.config.max_line_bytes, delimiter=self.config.csv_delimiter):
                    n_records += 1
                    self.counts.bump("records")
                    if rec.problem is not None:
                        self.problem(rec.problem)
                    else:
                        drafts, problems = record_to_drafts(rec.data or {}, self.config.columns, rec.file, rec.line,
                                                            Path(path).name)
                        for p in problems:
                            self.problem(p)
                        batch.extend(drafts)
                    self._since_ckpt += 1
                    if self._since_ckpt % self.config.batch_records == 0:
                        self.process(batch)
                        batch = []
                        self._file_pos[path] = (rec.end, rec.resume_line, n_records)
                        bar.update(task, completed=done_bytes + rec.progress, kept=self.counts.c["kept"])
                        if (self._since_ckpt >= self.config.checkpoint_records
                                or time.monotonic() - self._last_ckpt >= self.config.checkpoint_seconds):
                            self.checkpoint()
                    else:
                        self._file_pos[path] = (rec.end, rec.resume_line, n_records)
                self.process(batch)
                self.conn.execute("UPDATE files SET done = 1 WHERE path = ?", (path,))
                done_bytes += progress_total(path)
                bar.update(task, completed=done_bytes, kept=self.counts.c["kept"])
                self.checkpoint()
            return self.checkpoint(status="complete")

    def close(self) -> None:
        self.writer.close()
        self.errors.close()
        self.conn.close()


def ingest(inputs: Sequence[str | os.PathLike], out: str | os.PathLike, config: IngestConfig | None = None,
           overwrite: bool = False, progress: bool = False,
           on_checkpoint: Callable[[dict], None] | None = None) -> IngestReport:
    """Ingest ``inputs`` into the pool ``out`` (resuming it, or adding new files, if it exists).

    Returns an :class:`IngestReport`; the pool, manifest, state and error log are written next to
    ``out``. Each run is recorded in the audit log (action ``ingest``).
    """
    config = config or IngestConfig()
    t0 = time.monotonic()
    run = _Run([Path(p) for p in inputs], Path(out), config, overwrite, progress, on_checkpoint)
    try:
        manifest = run.run()
    finally:
        run.close()
    audit_log("ingest", Path(out).resolve(), manifest["counts"]["kept"], pool_id=manifest["pool_id"],
              inputs=[str(Path(p).resolve()) for p in inputs], encrypted=manifest["encryption"]["enabled"])
    return IngestReport(Path(out), manifest, run.problems, run.resumed, time.monotonic() - t0)


def read_manifest(pool: str | os.PathLike) -> dict:
    """The sidecar manifest of an ingested pool."""
    path = manifest_path(pool)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no manifest (was {pool} written by `guardmatch ingest`?)")
    return json.loads(path.read_text(encoding="utf-8"))


def iter_pool(pool: str | os.PathLike, cipher: AtRestCipher | None = None, kind: str | None = None):
    """The pool's rows as :class:`Example` objects (decrypting transparently).

    ``kind="prompt"`` / ``"response"`` keeps only user-turn / assistant-turn examples.
    """
    from guardmatch.data.example import parse_label
    from guardmatch.data.records import iter_jsonl

    for obj in iter_jsonl(pool, cipher):
        if kind is not None and (obj.get("metadata") or {}).get("kind") != kind:
            continue
        yield Example(id=str(obj["id"]), prompt=obj["prompt"], response=obj.get("response"),
                      label=parse_label(obj.get("label")), source=obj.get("source") or "",
                      metadata=obj.get("metadata") or {})


__all__ = ["IngestError", "IngestReport", "errors_path", "ingest", "iter_pool", "read_manifest", "state_path"]
