"""Batch prediction over jsonl / csv / parquet: streamed in chunks, with progress, resumable.

Each output line is ``{"id", "p_harmful", "flagged", "threshold", "model"}``. Rows already in the
output (by id) are not scored again, so a killed run continues where it stopped. The input is read
and scored ``chunk_size`` rows at a time (the same row checks, ids and format detection as
``load_file``), so memory stays flat whatever the file size; only the ids already written are kept.
Output files are owner-only and encrypted when ``$GUARDMATCH_ENCRYPTION_KEY`` is set (see
``guardmatch.storage``). ``model`` may be a ``GuardClassifier``, an ONNX classifier or a model
directory (an ONNX export is run by onnxruntime).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from guardmatch.data.example import Task
from guardmatch.data.loaders import load_file_chunks
from guardmatch.data.records import iter_jsonl, open_jsonl_writer
from guardmatch.progress import make_progress
from guardmatch.serving.backends import cut_to_window
from guardmatch.storage.crypto import AtRestCipher
from guardmatch.storage.lineage import register_derived


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
    profile: str | None = None,
    distributed: bool | None = None,
    shard: tuple[int, int] = (0, 1),
) -> dict[str, Any]:
    """Score ``input_path`` with ``model`` (a classifier or a model directory); append to ``out_path``.

    Flags at ``threshold``, else at the model's threshold profile ``profile`` (default: its own
    threshold); each line records the threshold and the profile used.

    Data-parallel when started by ``torchrun`` / ``accelerate launch`` (``distributed=None``: when
    ``WORLD_SIZE`` > 1): rank r scores every r-th row (``shard=(r, n)``) into
    ``<out>.part<r>-of<n>.jsonl`` (each part resumable), then rank 0 merges the parts in input order
    into ``out_path`` and removes them. On GPUs each rank uses cuda:LOCAL_RANK; across nodes the
    parts must be on a shared filesystem.
    """
    import os

    if distributed is None:
        distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        return _predict_sharded(model, input_path, out_path, format=format, column_mapping=column_mapping,
                                batch_size=batch_size, chunk_size=chunk_size, threshold=threshold, profile=profile)
    if isinstance(model, (str, Path)):
        from guardmatch.serving.backends import load_classifier

        model = load_classifier(model)
    task = Task(model.config.task)
    thr = model.config.threshold_for(profile) if threshold is None else threshold
    used_profile = "override" if threshold is not None else (profile or "default")
    window = int(model.config.max_length)
    chunks = load_file_chunks(input_path, format=format, task=task, column_mapping=column_mapping,
                              chunk_size=chunk_size)
    out_path = Path(out_path)
    _drop_torn_tail(out_path)
    done = _done_ids(out_path)
    name = str(getattr(model, "name", None) or model.config.provenance.get("fingerprint") or model.config.encoder)
    rows = written = already = 0
    skipped: Counter = Counter()
    problems: list[str] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with open_jsonl_writer(out_path, cipher=AtRestCipher.from_env(), append=True) as writer, make_progress(
        *columns, transient=False, unit="rows"
    ) as progress:
        bar = progress.add_task("predicting", total=None)
        rank, world = shard
        for part in chunks:
            skipped.update(part.report.skipped)
            problems.extend(str(p) for p in part.report.problems[: max(0, 20 - len(problems))])
            mine = [ex for i, ex in enumerate(part.examples, rows) if i % world == rank]
            rows += len(part.examples)
            todo = [ex for ex in mine if ex.id not in done]
            already += len(mine) - len(todo)
            if todo:
                prompts = cut_to_window([ex.prompt for ex in todo], window)
                responses = cut_to_window([ex.response or "" for ex in todo], window) if task is Task.RESPONSE else None
                probs = model.score(prompts, responses, batch_size=batch_size)
                for ex, p in zip(todo, probs):
                    writer.write({"id": ex.id, "p_harmful": round(float(p), 6), "flagged": bool(p >= thr),
                                  "threshold": thr, "profile": used_profile, "model": name})
                    done.add(ex.id)
                writer.flush(fsync=True)
                written += len(todo)
            progress.update(bar, completed=rows)
    register_derived(input_path, out_path, kind="predictions")
    return {
        "input": str(input_path),
        "output": str(out_path),
        "rows": rows,
        "scored_now": written,
        "already_done": already,
        "skipped_bad_rows": dict(skipped),
        "problems": problems[:20],
    }


def _predict_sharded(model: Any, input_path: str | Path, out_path: str | Path, **kw: Any) -> dict[str, Any]:
    import torch

    from guardmatch.distributed import group

    g = group()
    out_path = Path(out_path)
    parts = [out_path.with_name(f"{out_path.name}.part{r}-of{g.world}.jsonl") for r in range(g.world)]
    if isinstance(model, (str, Path)):
        from guardmatch.serving.backends import load_classifier

        model = load_classifier(model)
        if hasattr(model, "to") and torch.cuda.is_available():
            model = model.to(torch.device("cuda", torch.cuda.current_device()))
    summary = predict_file(model, input_path, parts[g.rank], distributed=False, shard=(g.rank, g.world), **kw)
    g.barrier()
    if g.is_main:
        merged = _merge_parts(parts, out_path)
        summary = {**summary, "output": str(out_path), "processes": g.world, "merged_rows": merged}
        for part in parts:
            part.unlink(missing_ok=True)
    g.barrier()
    return summary


def _merge_parts(parts: list[Path], out_path: Path) -> int:
    """Interleave the parts (rank r holds rows r, r+n, ...) back into input order, after any rows
    ``out_path`` already holds; rows already there are not written twice."""
    done = _done_ids(out_path)
    streams = [iter_jsonl(p) if p.exists() else iter(()) for p in parts]
    written = 0
    with open_jsonl_writer(out_path, cipher=AtRestCipher.from_env(), append=True) as writer:
        live = list(streams)
        while live:
            still = []
            for stream in live:
                rec = next(stream, None)
                if rec is None:
                    continue
                still.append(stream)
                if str(rec["id"]) not in done:
                    writer.write(rec)
                    done.add(str(rec["id"]))
                    written += 1
            live = still
        writer.flush(fsync=True)
    return written
