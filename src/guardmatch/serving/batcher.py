"""Dynamic micro-batching: concurrent requests are scored together in one forward pass.

Each request puts its texts on an asyncio queue, one future per text. A worker task takes the first
waiting text, then everything already queued, then waits at most ``max_wait_ms`` for more, up to
``max_batch`` texts, and scores the batch on the inference thread (one thread shared by all models,
so two models never fight over the same cores). While a batch runs, new requests queue up and form
the next batch, so batches grow with load and a lone request waits at most ``max_wait_ms``.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Callable, Sequence


class QueueFullError(RuntimeError):
    """More texts are waiting than the server accepts (``queue_limit``): the client should retry later."""


@dataclass
class _Item:
    payload: Any
    future: asyncio.Future


_STOP = object()


class MicroBatcher:
    """Collects single items from concurrent callers into batches for ``fn(list_of_payloads) -> list_of_results``.

    ``on_batch(size, seconds)`` is called after every batch (for metrics). ``fn`` runs on ``executor``
    (a single-thread pool: one inference at a time). The worker starts lazily on the first
    :meth:`submit`, in whatever event loop is running.
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
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0
        self.items = 0

    @property
    def pending(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    def _ensure_started(self) -> asyncio.Queue:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._loop is not loop:
            self._loop = loop
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._worker(self._queue), name="guardmatch-microbatcher")
        assert self._queue is not None
        return self._queue

    async def submit(self, payloads: Sequence[Any]) -> list[Any]:
        """Score ``payloads`` (each batched with whatever else is waiting); results in the same order."""
        queue = self._ensure_started()
        if queue.qsize() + len(payloads) > self.queue_limit:
            raise QueueFullError(f"{queue.qsize()} texts are already waiting (limit {self.queue_limit})")
        loop = asyncio.get_running_loop()
        futures = []
        for payload in payloads:
            fut = loop.create_future()
            queue.put_nowait(_Item(payload, fut))
            futures.append(fut)
        return list(await asyncio.gather(*futures))

    async def _collect(self, queue: asyncio.Queue, first: _Item) -> tuple[list[_Item], bool]:
        batch, stop = [first], False
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), remaining)
                except (asyncio.TimeoutError, TimeoutError):
                    break
            if item is _STOP:
                stop = True
                break
            batch.append(item)
        return batch, stop

    async def _worker(self, queue: asyncio.Queue) -> None:
        loop = asyncio.get_running_loop()
        stop = False
        while not stop:
            first = await queue.get()
            if first is _STOP:
                break
            batch, stop = await self._collect(queue, first)
            batch = [it for it in batch if not it.future.done()]  # a client that went away
            if not batch:
                continue
            start = time.perf_counter()
            try:
                results = await loop.run_in_executor(self.executor, self.fn, [it.payload for it in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)} items")
            except Exception as exc:  # every waiting request gets the error, the worker lives on
                for it in batch:
                    if not it.future.done():
                        it.future.set_exception(exc)
                continue
            finally:
                self.batches += 1
                self.items += len(batch)
                if self.on_batch is not None:
                    self.on_batch(len(batch), time.perf_counter() - start)
            for it, res in zip(batch, results):
                if not it.future.done():
                    it.future.set_result(res)
        # fail whatever is left so no caller waits forever
        while not queue.empty():
            item = queue.get_nowait()
            if item is not _STOP and not item.future.done():
                item.future.set_exception(RuntimeError("server is shutting down"))

    async def stop(self) -> None:
        """Finish the batch in flight, fail anything still queued, end the worker."""
        if self._task is None or self._queue is None:
            return
        if self._loop is asyncio.get_running_loop() and not self._task.done():
            self._queue.put_nowait(_STOP)
            try:
                await asyncio.wait_for(self._task, timeout=30)
            except (asyncio.TimeoutError, TimeoutError):
                self._task.cancel()
        self._task = None
        self._queue = None
