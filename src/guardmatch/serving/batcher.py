"""Dynamic micro-batching: concurrent requests are scored together in one forward pass, fairly.

Each request waits in a round-robin ring (one entry per request, not per text). A worker task
takes texts from the ring one request at a time, so a batch of ``max_batch`` texts holds one text
of every waiting request before a second text of any: a one-text request that arrives while a
64-text request is queued rides in the next batch instead of waiting behind all 64. Before
forming a batch the worker waits at most ``max_wait_ms`` for more texts, then scores the batch on
the inference thread (one thread shared by all models, so two models never fight over cores).
Work per batch is bounded by ``max_batch`` texts, each cut by the caller to what the model reads.

A batch that raises is retried one request at a time, so a bad item fails only its own request.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import Executor
from typing import Any, Callable, Sequence


class QueueFullError(RuntimeError):
    """More texts are waiting than the server accepts (``queue_limit``): the client should retry later."""


class _Request:
    """One caller's payloads, its results so far and the future it awaits."""

    __slots__ = ("payloads", "results", "next", "left", "future")

    def __init__(self, payloads: list[Any], future: asyncio.Future):
        self.payloads, self.future = payloads, future
        self.results: list[Any] = [None] * len(payloads)
        self.next = 0  # the first payload not yet taken into a batch
        self.left = len(payloads)  # payloads without a result

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class MicroBatcher:
    """Batches the payloads of concurrent callers for ``fn(list_of_payloads) -> list_of_results``.

    ``on_batch(size, seconds)`` is called after every call of ``fn`` (for metrics). ``fn`` runs on
    ``executor`` (a single-thread pool: one inference at a time). The worker starts lazily on the
    first :meth:`submit`, in whatever event loop is running.
    """

    def __init__(
        self,
        fn: Callable[[list[Any]], Sequence[Any]],
        executor: Executor,
        *,
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        queue_limit: int = 4096,
        on_batch: Callable[[int, float], None] | None = None,
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.fn = fn
        self.executor = executor
        self.max_batch = int(max_batch)
        self.max_wait = float(max_wait_ms) / 1000.0
        self.queue_limit = int(queue_limit)
        self.on_batch = on_batch
        self._ring: deque[_Request] = deque()
        self._pending = 0  # payloads in the ring not yet taken
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self.batches = 0
        self.items = 0
        self.retried = 0  # batches that raised and were retried request by request

    @property
    def pending(self) -> int:
        return self._pending

    def _ensure_started(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._loop is not loop:
            self._loop, self._stopping = loop, False
            self._ring, self._pending = deque(), 0
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._worker(), name="guardmatch-microbatcher")
        assert self._wake is not None
        return self._wake

    async def submit(self, payloads: Sequence[Any]) -> list[Any]:
        """Score ``payloads`` (batched with whatever else is waiting); results in the same order."""
        wake = self._ensure_started()
        payloads = list(payloads)
        if not payloads:
            return []
        if self._pending + len(payloads) > self.queue_limit:
            raise QueueFullError(f"{self._pending} texts are already waiting (limit {self.queue_limit})")
        req = _Request(payloads, asyncio.get_running_loop().create_future())
        self._ring.append(req)
        self._pending += len(payloads)
        wake.set()
        return await req.future

    def _take(self) -> list[tuple[_Request, int]]:
        """Up to ``max_batch`` (request, index) pairs, one per request per turn of the ring."""
        batch: list[tuple[_Request, int]] = []
        while self._ring and len(batch) < self.max_batch:
            req = self._ring.popleft()
            if req.future.done():  # failed, or the client went away
                self._pending -= len(req.payloads) - req.next
                continue
            batch.append((req, req.next))
            req.next += 1
            self._pending -= 1
            if req.next < len(req.payloads):
                self._ring.append(req)
        return batch

    async def _wait_for_batch(self) -> None:
        """Until something is queued, then at most ``max_wait`` more for a full batch."""
        assert self._wake is not None
        while not self._ring and not self._stopping:
            self._wake.clear()
            await self._wake.wait()
        deadline = time.monotonic() + self.max_wait
        while self._pending < self.max_batch and not self._stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except (asyncio.TimeoutError, TimeoutError):
                return

    async def _call(self, payloads: list[Any]) -> list[Any]:
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        try:
            results = list(await loop.run_in_executor(self.executor, self.fn, payloads))
        finally:
            self.batches += 1
            self.items += len(payloads)
            if self.on_batch is not None:
                self.on_batch(len(payloads), time.perf_counter() - start)
        if len(results) != len(payloads):
            raise RuntimeError(f"batch function returned {len(results)} results for {len(payloads)} items")
        return results

    async def _score(self, batch: list[tuple[_Request, int]]) -> None:
        try:
            results = await self._call([req.payloads[i] for req, i in batch])
        except Exception as exc:
            groups: dict[int, list[tuple[_Request, int]]] = {}
            for req, i in batch:
                groups.setdefault(id(req), []).append((req, i))
            if len(groups) == 1:  # nothing to isolate: the one request gets the error
                batch[0][0].fail(exc)
                return
            self.retried += 1
            for group in groups.values():  # one request at a time: a bad item fails only its own
                await self._score(group)
            return
        for (req, i), res in zip(batch, results):
            req.results[i] = res
            req.left -= 1
            if req.left == 0 and not req.future.done():
                req.future.set_result(req.results)

    async def _worker(self) -> None:
        while True:
            await self._wait_for_batch()
            batch = self._take()
            if batch:
                await self._score(batch)
            elif self._stopping:
                return

    async def stop(self) -> None:
        """Score what is already queued, then end the worker (failing anything left after 30 s)."""
        if self._task is None or self._wake is None:
            return
        if self._loop is asyncio.get_running_loop() and not self._task.done():
            self._stopping = True
            self._wake.set()
            try:
                await asyncio.wait_for(self._task, timeout=30)
            except (asyncio.TimeoutError, TimeoutError):
                self._task.cancel()
        for req in self._ring:
            req.fail(RuntimeError("server is shutting down"))
        self._ring.clear()
        self._pending = 0
        self._task = None
        self._wake = None
