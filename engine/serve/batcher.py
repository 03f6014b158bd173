"""Dynamic batching: requests from every connection wait in one queue, and the model thread
takes all that are waiting (up to `max_batch`) as one batch (`InfillEngine.infill_many`), so
concurrent requests share each forward pass instead of running one after another."""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)


class QueueFullError(Exception):
    """The queue holds `max_queued` requests already."""


@dataclass
class Work:
    """One request on its way to the model. `finish` is called once, on the model thread, with
    the InfillResult or the exception; `progress` with each ProgressEvent (None: not wanted)."""

    request: Any  # InfillRequest
    finish: Callable[[Any], None]
    progress: Callable[[Any], None] | None = None
    timeout_s: float = 120.0
    submitted: float = field(default_factory=time.monotonic)
    cancel_event: threading.Event = field(default_factory=threading.Event)

    @property
    def expired(self) -> bool:
        return time.monotonic() - self.submitted > self.timeout_s

    def cancelled(self) -> bool:
        return self.cancel_event.is_set() or self.expired


@dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0
    largest: int = 0


class Batcher:
    """One model thread over one queue. `window_s`: after the first request of a batch, how
    long to wait for others to join when fewer than `max_batch` are waiting (0: take what is
    there; requests that arrive while a batch runs join the next one anyway)."""

    def __init__(self, engine, *, max_batch: int = 16, max_queued: int = 256,
                 window_s: float = 0.005):
        self.engine = engine
        self.max_batch = max_batch
        self.max_queued = max_queued
        self.window_s = window_s
        self.stats = BatchStats()
        self._queue: collections.deque[Work] = collections.deque()
        self._ready = threading.Condition()
        self._closed = False
        self._running = 0
        self._thread = threading.Thread(target=self._work, name="astdiffuse-batcher",
                                        daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def running(self) -> int:
        return self._running

    def submit(self, work: Work) -> None:
        with self._ready:
            if self._closed:
                raise QueueFullError("the server is shutting down")
            if len(self._queue) >= self.max_queued:
                raise QueueFullError(f"{len(self._queue)} requests are waiting for the model "
                                     f"(the limit is {self.max_queued}); try again shortly")
            self._queue.append(work)
            self._ready.notify()

    def close(self) -> None:
        """Stop taking work; what is queued is cancelled; the running batch finishes."""
        with self._ready:
            self._closed = True
            for work in self._queue:
                work.cancel_event.set()
            self._ready.notify()

    def _take(self) -> list[Work] | None:
        with self._ready:
            while not self._queue and not self._closed:
                self._ready.wait()
            if self._closed and not self._queue:
                return None
            if len(self._queue) < self.max_batch and self.window_s > 0:
                self._ready.wait_for(lambda: len(self._queue) >= self.max_batch or self._closed,
                                     timeout=self.window_s)
            batch = [self._queue.popleft() for _ in range(min(self.max_batch,
                                                              len(self._queue)))]
            self._running = len(batch)
            return batch

    def _work(self) -> None:
        from ..infill import InfillCancelled

        while True:
            batch = self._take()
            if batch is None:
                return
            live = []
            for work in batch:  # cancelled or timed out while queued: no model time for it
                if work.cancelled():
                    _finish(work, InfillCancelled("cancelled while queued"))
                else:
                    live.append(work)
            if live:
                self._run(live)
            self._running = 0

    def _run(self, batch: list[Work]) -> None:
        began = time.perf_counter()
        outcomes = self._infill(batch)
        self.stats.batches += 1
        self.stats.requests += len(batch)
        self.stats.largest = max(self.stats.largest, len(batch))
        self._running = 0
        log.debug("batch of %d request(s) in %.0f ms", len(batch),
                  (time.perf_counter() - began) * 1000)
        for work, outcome in zip(batch, outcomes):
            _finish(work, outcome)

    def _infill(self, batch: list[Work]) -> list[Any]:
        try:
            return self.engine.infill_many(
                [w.request for w in batch], progress=[w.progress for w in batch],
                cancelled=[w.cancelled for w in batch])
        except Exception as err:  # noqa: BLE001 - the model failed
            if len(batch) == 1:
                log.exception("a request failed")
                return [err]
        # One request's failure (a value the engine did not foresee, out of memory) must not
        # be every request's that shared its batch: run them again one by one.
        log.warning("a batch of %d requests failed; running them one by one", len(batch))
        return [outcome for work in batch for outcome in self._infill([work])]


def _finish(work: Work, outcome: Any) -> None:
    try:
        work.finish(outcome)
    except Exception:  # noqa: BLE001 - a closed connection must not stop the model thread
        log.exception("delivering a result failed")
