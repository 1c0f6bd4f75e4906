"""The audit log of exports, ingests and purges: ``<cache root>/audit.jsonl`` (plaintext, no user text).

Each record is ``{who, when, action, what, rows, host, pid, ...}``; who = ``$GUARDMATCH_AUDIT_USER``
or the OS user, when = UTC ISO-8601.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import json
import os
import socket
from pathlib import Path
from typing import Any

from guardmatch.storage.files import cache_root, locked_append

AUDIT_USER_ENV = "GUARDMATCH_AUDIT_USER"


def who() -> str:
    """The acting user: ``$GUARDMATCH_AUDIT_USER``, else the OS user."""
    env = os.environ.get(AUDIT_USER_ENV)
    if env:
        return env
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers)
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def now() -> str:
    """UTC now, ISO-8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def audit_log(action: str, what: str | os.PathLike, rows: int | None, path: str | os.PathLike | None = None,
              **details: Any) -> dict:
    """Append one record ``{who, when, action, what, rows, host, pid, **details}``; returns it.

    ``action``: e.g. ``export``, ``ingest``, ``purge``; ``what``: the file or dataset concerned.
    ``path`` overrides the log file (default ``<cache root>/audit.jsonl``).
    """
    record = {
        "who": who(),
        "when": now(),
        "action": action,
        "what": str(what),
        "rows": rows,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        **details,
    }
    log = Path(path) if path is not None else cache_root() / "audit.jsonl"
    with locked_append(log) as fh:
        fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    return record


def read_audit_log(path: str | os.PathLike | None = None) -> list[dict]:
    """All records of the audit log (oldest first); empty if there is none yet."""
    log = Path(path) if path is not None else cache_root() / "audit.jsonl"
    if not log.exists():
        return []
    out = []
    with open(log, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(json.loads(line))
    return out


