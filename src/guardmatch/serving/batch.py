"""Batch prediction over jsonl / csv / parquet: chunked, with progress, resumable.

Each output line is ``{"id", "p_harmful", "flagged", "threshold", "model"}``. Rows already in the
output (by id) are not scored again, so a killed run continues where it stopped. Output files
are owner-only and encrypted when ``$GUARDMATCH_ENCRYPTION_KEY`` is set (see ``guardmatch.security``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from rich.progress import Progress

from guardmatch.data.example import Task
from guardmatch.data.loaders import load_file
from guardmatch.security import AtRestCipher, iter_jsonl, open_jsonl_writer, register_derived


def _done_ids(path: Path) -> set[str]:
    if not path.exists():
        return set()
    done = set()
    try:
        for rec in iter_jsonl(path):
            done.add(str(rec["id"]))
    except json.JSONDecodeError:
        pass  # a torn last line from a kill: everything before it counts
    return done


def _drop_torn_tail(path: Path) -> None:
    """Cut a partial last line (no trailing newline) left by a kill mid-write."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with path.open("r+b") as fh:
            fh.truncate(cut)


def predict_file(
    model: Any,
    input_path: str | Path,
    out_path: str | Path,
    *,
    format: str | None = None,
    column_mapping: Mapping[str, str] | None = None,
    batch_size: int = 64,
    chunk_size: int = 1024,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Score ``input_path`` with ``model`` (a classifier or a model directory); append to ``out_path``."""
    if isinstance(model, (str, Path)):
        from guardmatch.serving.backends import load_classifier

        model = load_classifier(model)
    task = Task(model.config.task)
    thr = model.config.threshold if threshold is None else threshold
    loaded = load_file(input_path, format=format, task=task, column_mapping=column_mapping,
                       require_label=False, errors="skip")
    out_path = Path(out_path)
    _drop_torn_tail(out_path)
    done = _done_ids(out_path)
    todo = [ex for ex in loaded.examples if ex.id not in done]
    name = str(getattr(model, "name", None) or model.config.provenance.get("fingerprint") or model.config.encoder)
    written = 0
    with open_jsonl_writer(out_path, cipher=AtRestCipher.from_env(), append=True) as writer, Progress(
        transient=False
    ) as progress:
        bar = progress.add_task("predicting", total=len(loaded.examples), completed=len(loaded.examples) - len(todo))
        for start in range(0, len(todo), chunk_size):
            part = todo[start : start + chunk_size]
            prompts = [ex.prompt for ex in part]
            responses = [ex.response or "" for ex in part] if task is Task.RESPONSE else None
            probs = model.predict_proba(prompts, responses, batch_size=batch_size)
            for ex, p in zip(part, probs):
                writer.write({"id": ex.id, "p_harmful": round(float(p), 6), "flagged": bool(p >= thr),
                              "threshold": thr, "model": name})
            writer.flush(fsync=True)
            written += len(part)
            progress.update(bar, advance=len(part))
    register_derived(input_path, out_path, kind="predictions")
    return {
        "input": str(input_path),
        "output": str(out_path),
        "rows": len(loaded.examples),
        "scored_now": written,
        "already_done": len(loaded.examples) - len(todo),
        "skipped_bad_rows": dict(loaded.report.skipped),
        "problems": [str(p) for p in loaded.report.problems[:20]],
    }
