"""Generate views into the cache: batched, resumable, filtered, with progress.

:func:`augment` is what ``guardmatch augment`` runs. Work is a list of *view slots* (source text x
view index). A slot is done when it has an accepted view or ``max_attempts`` attempts; every
attempt is appended to the cache right after its batch, so a killed run loses at most the batch in
flight and the next run starts exactly where the cache ends.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, cast

from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from guardmatch.augment.base import Augmenter, Draft, ViewRequest, stable_seed
from guardmatch.augment.cache import ACCEPTED, REJECTED, ViewCache, ViewRecord, unique_by_key
from guardmatch.augment.filters import QualityFilter
from guardmatch.data.example import Example, Task
from guardmatch.progress import make_progress


class AugmentReport(BaseModel):
    """What one run did (and what the cache holds afterwards)."""

    augmenter: str
    fingerprint: str
    cache_dir: str
    run_id: str
    task: str
    texts: int
    views_per_text: int
    slots: int
    slots_done_before: int
    attempts: int = 0
    accepted: int = 0
    rejected: dict[str, int] = {}
    elapsed_s: float = 0.0
    generate_s: float = 0.0
    filter_s: float = 0.0
    complete: bool = False
    cache_counts: dict[str, Any] = {}
    runtime: dict[str, Any] = {}  # speed-only settings (threads, parallel contexts, server concurrency)

    @property
    def views_per_s(self) -> float:
        return self.accepted / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def attempts_per_s(self) -> float:
        return self.attempts / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        out = self.model_dump()
        out["views_per_s"] = round(self.views_per_s, 4)
        out["attempts_per_s"] = round(self.attempts_per_s, 4)
        return out


@dataclass
class _Slot:
    example: Example
    view: int
    attempts: int


def pending_slots(cache: ViewCache, examples: Sequence[Example], task: Task, views: int,
                  max_attempts: int) -> tuple[list[_Slot], int]:
    """Slots still to do (example-major order) and how many were already done."""
    todo, done = [], 0
    for ex in examples:
        key = ex.content_hash(task)
        for v in range(views):
            ok, n = cache.slot_state(task, key, v)
            if ok or n >= max_attempts:
                done += 1
            else:
                todo.append(_Slot(ex, v, n))
    return todo, done


def augment(
    examples: Sequence[Example],
    augmenter: Augmenter,
    task: Task | str = Task.PROMPT,
    views: int = 1,
    *,
    cache_root: str | Path | None = None,
    quality_filter: QualityFilter | None = None,
    batch_size: int | None = None,
    max_attempts: int = 2,
    progress: bool = True,
    console: Console | None = None,
    command: str | None = None,
    sources: Sequence[str | Path] = (),
    time_limit_s: float | None = None,
    manifest_every_s: float = 30.0,
) -> AugmentReport:
    """Make ``views`` accepted views (up to ``max_attempts`` tries each) of every distinct text.

    Already cached slots are skipped; the cache is keyed by the augmenter's fingerprint *and* the
    filter config, so changing either starts a new cache. Returns an :class:`AugmentReport`.
    """
    task = Task(task)
    augmenter.check_task(task)
    if views < 1:
        raise ValueError("views must be >= 1")
    if max_attempts < 1:
        raise ValueError("max_attempts must be >= 1")
    quality_filter = quality_filter or QualityFilter()
    description, fingerprint = cache_identity(augmenter, quality_filter)
    cache = ViewCache.create(description, fingerprint, cache_root, command=command)
    for source in sources:  # so that `guardmatch purge <pool>` also removes this cache
        cache.register_source(source)
    uniq = unique_by_key(examples, task)
    queue_list, done_before = pending_slots(cache, uniq, task, views, max_attempts)
    queue: deque[_Slot] = deque(queue_list)
    batch_size = batch_size or augmenter.preferred_batch_size()
    console = console or Console(stderr=True)
    rejected: Counter = Counter()
    t0 = time.perf_counter()
    gen_s = filt_s = 0.0
    attempts = accepted = 0
    last_manifest = t0
    if queue:
        augmenter.prepare()  # load models now: a bad path fails before any slot is spent

    with cache.writer() as writer:
        report = AugmentReport(augmenter=augmenter.name, fingerprint=fingerprint, cache_dir=str(cache.path),
                               run_id=writer.run_id, task=task.value, texts=len(uniq), views_per_text=views,
                               slots=len(uniq) * views, slots_done_before=done_before,
                               runtime=augmenter.runtime())
        bar = make_progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                            console=console, disable=not progress, transient=False, unit="slots")
        with bar:
            tid = bar.add_task(f"{augmenter.name} ({task.value})", total=len(queue), stats="")
            try:
                while queue:
                    if time_limit_s is not None and time.perf_counter() - t0 > time_limit_s:
                        break
                    batch = [queue.popleft() for _ in range(min(batch_size, len(queue)))]
                    requests = [_request(augmenter, s, task) for s in batch]
                    t = time.perf_counter()
                    drafts = _safe_generate(augmenter, requests, first=attempts == 0)
                    gen_s += time.perf_counter() - t
                    t = time.perf_counter()
                    reasons = quality_filter.check(requests, drafts)
                    filt_s += time.perf_counter() - t
                    for slot, req, draft, reason in zip(batch, requests, drafts, reasons):
                        meta = {"augmenter": augmenter.name, "view_index": req.view_index, "attempt": req.attempt,
                                **draft.metadata}
                        if req.window is not None:
                            meta["window"] = req.window
                        if draft.error:
                            meta["error"] = draft.error[:500]
                        writer.write(ViewRecord(task, req.key, req.view_index, req.attempt,
                                                ACCEPTED if reason is None else REJECTED, reason,
                                                draft.prompt, draft.response, meta, writer.run_id, req.example.id))
                        attempts += 1
                        if reason is None:
                            accepted += 1
                        else:
                            rejected[reason] += 1
                            if slot.attempts + 1 < max_attempts:
                                queue.append(_Slot(slot.example, slot.view, slot.attempts + 1))
                                bar.update(tid, total=cast(float, bar.tasks[0].total) + 1)  # added with a total
                    writer.flush()
                    elapsed = time.perf_counter() - t0
                    bar.update(tid, advance=len(batch),
                               stats=f"ok {accepted} rej {sum(rejected.values())} {accepted / max(elapsed, 1e-9):.2f} views/s")
                    if time.perf_counter() - last_manifest > manifest_every_s:
                        _record_run(cache, report, attempts, accepted, rejected, t0, gen_s, filt_s, queue)
                        last_manifest = time.perf_counter()
            finally:
                _record_run(cache, report, attempts, accepted, rejected, t0, gen_s, filt_s, queue)
                report.cache_counts = cache.manifest.get("counts", {})
    return report


def _request(augmenter: Augmenter, slot: _Slot, task: Task) -> ViewRequest:
    """The request for one slot; with a source window, its example is cut to what the encoder reads
    (the request keeps the uncut text's key, and the cut is recorded in the view's metadata)."""
    key = slot.example.content_hash(task)
    seed = stable_seed(augmenter.config.seed, key, slot.view, slot.attempts)
    window = augmenter.config.window
    if window is None:
        return ViewRequest(slot.example, task, slot.view, slot.attempts, seed)
    example, meta = window.cut(slot.example, task)
    return ViewRequest(example, task, slot.view, slot.attempts, seed, source_key=key, window=meta)


def _record_run(cache: ViewCache, report: AugmentReport, attempts: int, accepted: int, rejected: Counter,
                t0: float, gen_s: float, filt_s: float, queue: deque) -> None:
    """Update the report and this run's entry in the manifest (also mid-run: a kill loses <30 s of it)."""
    report.attempts, report.accepted, report.rejected = attempts, accepted, dict(rejected)
    report.elapsed_s = round(time.perf_counter() - t0, 3)
    report.generate_s, report.filter_s = round(gen_s, 3), round(filt_s, 3)
    report.complete = not queue
    runs = [r for r in cache.manifest.get("runs", []) if r.get("run_id") != report.run_id]
    if attempts:
        runs.append({k: v for k, v in report.summary().items() if k != "cache_counts"})
    cache.write_manifest(runs=runs)


def cache_identity(augmenter: Augmenter, quality_filter: QualityFilter) -> tuple[dict[str, Any], str]:
    """The manifest description and fingerprint of (augmenter, filters): what keys a cache."""
    description = augmenter.describe()
    description["filters"] = quality_filter.describe()
    fingerprint = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()
    return description, fingerprint


def _safe_generate(augmenter: Augmenter, requests: list[ViewRequest], first: bool = False) -> list[Draft]:
    """The augmenter's drafts; a crash of a later batch becomes one ``error`` draft per request.

    A crash of the first batch is raised: it is almost always a setup problem, not a bad text.
    """
    try:
        drafts = augmenter.generate(requests)
    except Exception as exc:  # noqa: BLE001 - a failing batch must not lose the run
        if first:
            raise
        return [Draft(error=f"{type(exc).__name__}: {exc}") for _ in requests]
    if len(drafts) != len(requests):
        raise RuntimeError(f"{augmenter.name} returned {len(drafts)} drafts for {len(requests)} requests")
    return drafts
