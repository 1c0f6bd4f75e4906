"""Dynamic micro-batching: concurrent requests are scored together, fairly, in batches of bounded work.

Work per batch is bounded, not only its count of texts: each payload has a *cost* (for a text
model, an estimate of its tokens, capped at what the model reads) and a batch holds at most
``max_batch`` payloads and at most ``max_batch_tokens`` of *padded* cost (its size times its
costliest payload: what a padded forward pass computes). A batch of long texts is therefore
small, a batch of short texts large.

Length lanes: payloads are sorted by cost into lanes (``lane_bounds``, e.g. up to 16, 32, 64 and
up to the model's window), each a round-robin ring with one entry per request, so a batch holds
texts of similar length (little padding: the same engine scores random-length traffic at about
half its rate when batches mix lengths) and one text of every waiting request of that lane before
a second text of any. The shortest non-empty lane is served first; a lane passed over
``max_skips`` times in a row while non-empty is served next (the longest-waiting first), so long
texts are never starved and a short request waits behind at most one batch of long ones.

The engine never waits for the event loop: batches are formed and scored on the executor (a
single-thread pool, shared by all models, so two models never fight over cores); each finished
batch immediately forms the next one (re-queued on the executor, so a second model's batches
interleave), and results go back to the event loop with ``call_soon_threadsafe``. When the queue
was idle, the first batch waits at most ``max_wait_ms`` for more payloads to join it.

A batch that raises is retried one request at a time, so a bad item fails only its own request.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from concurrent.futures import Executor
from typing import Any, Callable, Sequence

from guardmatch.errors import GuardmatchError


class QueueFullError(GuardmatchError, RuntimeError):
    """More texts are waiting than the server accepts (``queue_limit``): the client should retry later."""


class _Request:
    """One caller's payloads, its results so far and the future it awaits (on ``loop``)."""

    __slots__ = ("payloads", "costs", "results", "left", "future", "loop", "dead")

    def __init__(self, payloads: list[Any], costs: list[int], future: asyncio.Future,
                 loop: asyncio.AbstractEventLoop):
        self.payloads, self.costs, self.future, self.loop = payloads, costs, future, loop
        self.results: list[Any] = [None] * len(payloads)
        self.left = len(payloads)  # payloads without a result (touched on the event loop only)
        self.dead = False  # failed: its other payloads are not scored (set on the executor)

    def gone(self) -> bool:
        return self.dead or self.future.done()


class _Entry:
    """A request's payloads in one lane: their indices, and the first one not yet taken."""

    __slots__ = ("req", "idx", "next")

    def __init__(self, req: _Request, idx: list[int]):
        self.req, self.idx, self.next = req, idx, 0


class MicroBatcher:
    """Batches the payloads of concurrent callers for ``fn(list_of_payloads) -> list_of_results``.

    ``cost(payload) -> int`` (default 1) is the payload's work, e.g. its tokens; a batch holds at
    most ``max_batch`` payloads and ``max_batch_tokens`` of padded cost (``len(batch) *
    max(cost)``; ``None``: no such bound; one payload always fits). ``lane_bounds`` (increasing
    costs) splits payloads into lanes: cost <= bounds[0], <= bounds[1], ..., and the rest.
    ``on_batch(size, seconds)`` is called after every call of ``fn`` (for metrics, on the executor's
    thread). ``fn`` runs on ``executor`` (a single-thread pool: one inference at a time).
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
        cost: Callable[[Any], int] | None = None,
        max_batch_tokens: int | None = None,
        lane_bounds: Sequence[int] = (),
        max_skips: int = 2,
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if max_batch_tokens is not None and max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be >= 1, got {max_batch_tokens}")
        if list(lane_bounds) != sorted(set(lane_bounds)):
            raise ValueError(f"lane_bounds must be increasing, got {list(lane_bounds)}")
        self.fn = fn
        self.executor = executor
        self.max_batch = int(max_batch)
        self.max_wait = float(max_wait_ms) / 1000.0
        self.queue_limit = int(queue_limit)
        self.on_batch = on_batch
        self.cost = cost
        self.max_batch_tokens = None if max_batch_tokens is None else int(max_batch_tokens)
        self.lane_bounds = tuple(int(b) for b in lane_bounds)
        self.max_skips = int(max_skips)
        self._lock = threading.Condition(threading.Lock())
        self._lanes: list[deque[_Entry]] = [deque() for _ in range(len(self.lane_bounds) + 1)]
        self._skips = [0] * len(self._lanes)
        self._pending = 0  # payloads queued and not yet taken into a batch
        self._draining = False  # a drain is running or queued on the executor
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self.batches = 0
        self.items = 0
        self.retried = 0  # batches that raised and were retried request by request
        self.lane_batches = [0] * len(self._lanes)

    @property
    def pending(self) -> int:
        return self._pending

    def _lane(self, cost: int) -> int:
        for i, bound in enumerate(self.lane_bounds):
            if cost <= bound:
                return i
        return len(self.lane_bounds)

    async def submit(self, payloads: Sequence[Any]) -> list[Any]:
        """Score ``payloads`` (batched with whatever else is waiting); results in the same order."""
        loop = asyncio.get_running_loop()
        payloads = list(payloads)
        if not payloads:
            return []
        costs = [max(1, int(self.cost(p))) for p in payloads] if self.cost is not None else [1] * len(payloads)
        req = _Request(payloads, costs, loop.create_future(), loop)
        by_lane: dict[int, list[int]] = {}
        for i, c in enumerate(costs):
            by_lane.setdefault(self._lane(c), []).append(i)
        kick = False
        with self._lock:
            if self._loop is not loop:  # first use, or a new event loop (a restarted app)
                self._loop, self._stopping = loop, False
            if self._pending + len(payloads) > self.queue_limit:
                raise QueueFullError(f"{self._pending} texts are already waiting (limit {self.queue_limit})")
            for lane, idx in by_lane.items():
                self._lanes[lane].append(_Entry(req, idx))
            self._pending += len(payloads)
            if not self._draining:
                self._draining = kick = True
            self._lock.notify()
        if kick:  # after the callbacks already queued: requests submitted together join one batch
            loop.call_soon(self._start_drain, True)
        return await req.future

    def _start_drain(self, first: bool) -> None:
        try:
            self.executor.submit(self._drain, first)
        except RuntimeError as exc:  # the executor is shut down
            self._abandon(exc)

    def _abandon(self, exc: BaseException) -> None:
        with self._lock:
            entries = [e for lane in self._lanes for e in lane]
            for lane in self._lanes:
                lane.clear()
            self._pending, self._draining = 0, False
        for e in entries:
            self._deliver_threadsafe(e.req, None, exc)

    # -- on the executor ---------------------------------------------------------------------
    def _choose_lane(self) -> int | None:
        """The shortest non-empty lane, unless a lane has been passed over ``max_skips`` times."""
        busy = [i for i, lane in enumerate(self._lanes) if lane]
        if not busy:
            return None
        starved = [i for i in busy if self._skips[i] >= self.max_skips]
        chosen = max(starved, key=lambda i: (self._skips[i], -i)) if starved else busy[0]
        for i in busy:
            self._skips[i] = 0 if i == chosen else self._skips[i] + 1
        return chosen

    def _take(self) -> list[tuple[_Request, int]]:
        """One lane's batch: (request, index) pairs, one per request per turn of its ring, within
        ``max_batch`` payloads and ``max_batch_tokens`` of padded cost. Called with the lock held."""
        while True:
            lane_no = self._choose_lane()
            if lane_no is None:
                return []
            ring = self._lanes[lane_no]
            batch: list[tuple[_Request, int]] = []
            top = 0
            while ring and len(batch) < self.max_batch:
                entry = ring.popleft()
                req = entry.req
                if req.gone():  # failed, or the client went away
                    self._pending -= len(entry.idx) - entry.next
                    continue
                i = entry.idx[entry.next]
                c = req.costs[i]
                if batch and self.max_batch_tokens is not None and (len(batch) + 1) * max(top, c) > self.max_batch_tokens:
                    ring.appendleft(entry)  # its turn comes first in the next batch of this lane
                    break
                batch.append((req, i))
                top = max(top, c)
                entry.next += 1
                self._pending -= 1
                if entry.next < len(entry.idx):
                    ring.append(entry)
            if batch:
                self.lane_batches[lane_no] += 1
                return batch

    def _drain(self, first: bool) -> None:
        """Form and score one batch, then queue the next drain (or stop when nothing is left)."""
        with self._lock:
            if first and self.max_wait > 0:
                deadline = time.monotonic() + self.max_wait
                while self._pending < self.max_batch and not self._stopping:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._lock.wait(remaining)
            batch = self._take()
            if not batch:
                self._draining = False
        if not batch:
            return
        try:
            self._score(batch)
        finally:
            try:
                self.executor.submit(self._drain, False)
            except RuntimeError as exc:  # shut down meanwhile
                self._abandon(exc)

    def _call(self, payloads: list[Any]) -> list[Any]:
        start = time.perf_counter()
        try:
            results = list(self.fn(payloads))
        finally:
            self.batches += 1
            self.items += len(payloads)
            if self.on_batch is not None:
                self.on_batch(len(payloads), time.perf_counter() - start)
        if len(results) != len(payloads):
            raise RuntimeError(f"batch function returned {len(results)} results for {len(payloads)} items")
        return results

    def _score(self, batch: list[tuple[_Request, int]]) -> None:
        try:
            results = self._call([req.payloads[i] for req, i in batch])
        except Exception as exc:
            groups: dict[int, list[tuple[_Request, int]]] = {}
            for req, i in batch:
                groups.setdefault(id(req), []).append((req, i))
            if len(groups) == 1:  # nothing to isolate: the one request gets the error
                req = batch[0][0]
                req.dead = True
                self._deliver_threadsafe(req, None, exc)
                return
            self.retried += 1
            for group in groups.values():  # one request at a time: a bad item fails only its own
                self._score(group)
            return
        per_req: dict[int, tuple[_Request, list[tuple[int, Any]]]] = {}
        for (req, i), res in zip(batch, results):
            per_req.setdefault(id(req), (req, []))[1].append((i, res))
        for req, done in per_req.values():
            self._deliver_threadsafe(req, done, None)

    def _deliver_threadsafe(self, req: _Request, done: list[tuple[int, Any]] | None, exc: BaseException | None) -> None:
        try:
            req.loop.call_soon_threadsafe(self._deliver, req, done, exc)
        except RuntimeError:  # the event loop is closed: nobody is waiting any more
            pass

    # -- on the event loop -------------------------------------------------------------------
    @staticmethod
    def _deliver(req: _Request, done: list[tuple[int, Any]] | None, exc: BaseException | None) -> None:
        if req.future.done():
            return
        if exc is not None:
            req.future.set_exception(exc)
            return
        for i, res in done or ():
            req.results[i] = res
            req.left -= 1
        if req.left == 0:
            req.future.set_result(req.results)

    async def stop(self) -> None:
        """Score what is already queued, then end (failing anything left after 30 s)."""
        if self._loop is None:
            return
        if self._loop is asyncio.get_running_loop():
            with self._lock:
                self._stopping = True
                self._lock.notify_all()
            deadline = time.monotonic() + 30
            while self._draining and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            await asyncio.sleep(0)  # the last results, queued by the executor, reach their callers
        with self._lock:
            entries = [e for lane in self._lanes for e in lane]
            for lane in self._lanes:
                lane.clear()
            self._pending = 0
        for e in entries:
            if not e.req.future.done():
                e.req.future.set_exception(RuntimeError("server is shutting down"))
        self._loop = None
