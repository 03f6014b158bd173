"""Bookkeeping of running infills: one job per request with its own cancellation flag (polled by
the engine between steps), at most one live job per document, and progress / trajectory payloads.

pygls cancels a request only before its handler starts; a running generation stops because the
engine's `cancelled()` callback reads the job's flag, which `$/cancelRequest`, a work-done
progress cancel, a newer request for the same document and shutdown all set.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

SUPERSEDED = "superseded by a newer request for the same document"
USER_CANCELLED = "cancelled by the user"
SHUTDOWN = "the server is shutting down"
CLOSED = "the document was closed"


@dataclass
class Job:
    """One infill request for one document."""

    id: int
    uri: str
    version: int | None
    request: Any = None  # the JSON-RPC id of the request it answers
    token: Any = None  # the work-done progress token, once there is one
    reason: str | None = None  # why it was cancelled
    _flag: threading.Event = field(default_factory=threading.Event, repr=False)

    def cancel(self, reason: str) -> None:
        if not self._flag.is_set():
            self.reason = reason
            self._flag.set()

    def cancelled(self) -> bool:
        """The engine's `cancelled` callback: True once anything cancelled this job."""
        return self._flag.is_set()


class JobRegistry:
    """Live jobs by document and by progress token (thread-safe: the engine thread polls)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._by_uri: dict[str, Job] = {}
        self._jobs: dict[int, Job] = {}

    def start(self, uri: str, version: int | None, request: Any = None) -> Job:
        """A new job for `uri` answering request id `request`; the document's older job, if
        any, is cancelled (superseded)."""
        with self._lock:
            job = Job(next(self._ids), uri, version, request)
            older = self._by_uri.get(uri)
            if older is not None:
                older.cancel(SUPERSEDED)
            self._by_uri[uri] = job
            self._jobs[job.id] = job
            return job

    def finish(self, job: Job) -> None:
        with self._lock:
            self._jobs.pop(job.id, None)
            if self._by_uri.get(job.uri) is job:
                del self._by_uri[job.uri]

    def attach_token(self, job: Job, token: Any) -> None:
        with self._lock:
            job.token = token

    def cancel_token(self, token: Any, reason: str = USER_CANCELLED) -> bool:
        """Cancel the job reporting progress under `token`; False when none does."""
        with self._lock:
            found = [job for job in self._jobs.values() if job.token == token]
        for job in found:
            job.cancel(reason)
        return bool(found)

    def cancel_request(self, request: Any, reason: str = USER_CANCELLED) -> bool:
        """`$/cancelRequest`: cancel the job answering request id `request`."""
        with self._lock:
            found = [job for job in self._jobs.values()
                     if request is not None and job.request == request]
        for job in found:
            job.cancel(reason)
        return bool(found)

    def cancel_uri(self, uri: str, reason: str) -> bool:
        with self._lock:
            job = self._by_uri.get(uri)
        if job is not None:
            job.cancel(reason)
        return job is not None

    def cancel_all(self, reason: str) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel(reason)

    def active(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())


class ProgressTracker:
    """Turns engine `ProgressEvent`s (step, total, spans, phase) into work-done reports: a
    percentage that never goes back (the engine's total is an estimate that repair rounds
    raise) and a short message."""

    def __init__(self, label: str = ""):
        self.label = label
        self.percent = 0

    def report(self, event: Any) -> tuple[int, str]:
        total = max(int(event.total), 1)
        step = min(int(event.step), total)
        # 99 at most: 100 is the end notification's
        self.percent = max(self.percent, min(99, (100 * step) // total))
        phase = "repairing" if getattr(event, "phase", "denoise") == "repair" else "denoising"
        return self.percent, f"{phase}: step {step}/{total}{self.label}"


def trajectory_params(job: Job, event: Any, span_ranges: list[Any]) -> dict:
    """Params of one `astdiffuse/trajectory` notification (docs/lsp.md): the partial text of each
    span (still-masked tokens shown as U+2591) and the document range it will replace."""
    spans = [{"range": rng, "text": text} for rng, text in zip(span_ranges, event.spans)]
    return {"uri": job.uri, "version": job.version, "job": job.id, "step": int(event.step),
            "total": int(event.total), "phase": getattr(event, "phase", "denoise"),
            "spans": spans}
