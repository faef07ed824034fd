"""What a handler sees of the job it runs: emit, log, FileOutput, and the errors that end a job."""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Dict, List, Optional, Union


class JobCanceled(Exception):
    """Raised by `emit` once the broker wants the job to stop: a client canceled it, it ran past
    its maximum run time, or its lease moved on to another worker. `predict` may let it propagate."""

    def __init__(self, reason: str) -> None:
        super().__init__("The broker asked the job to stop (%s)." % reason)
        self.reason = reason


class RetryableError(Exception):
    """Raise it from `predict` to fail this attempt as retryable: the job goes back to the queue
    (using one of its retries) instead of failing for good."""


class FileOutput(os.PathLike):  # type: ignore[type-arg]
    """A file `predict` returns in its result: it is uploaded to the broker before the job
    completes, and the client finds its file object (`file_id`, `url`, `sha256`, …) in its place."""

    def __init__(self, path: Union[str, "os.PathLike[str]"], name: Optional[str] = None, content_type: Optional[str] = None) -> None:
        self.path = os.fspath(path)
        self.name = name or os.path.basename(self.path)
        self.content_type = content_type

    def __fspath__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return "FileOutput(%r)" % self.path


class Job:
    """One leased attempt of a job. Its report (emits and log lines not yet sent) is shared by the
    thread running `predict` and the thread heartbeating it, under one lock."""

    def __init__(self, lease: Dict[str, Any]) -> None:
        self.request_id: str = lease["request_id"]
        self.model: str = lease["model"]
        self.lease_token: str = lease["lease_token"]
        self.attempt: int = int(lease.get("attempt", 1))
        self.priority: int = int(lease.get("priority", 0))
        self.payload: Dict[str, Any] = lease.get("payload") or {}
        self.info: Dict[str, Any] = lease.get("info") or {}
        self.path: Optional[str] = lease.get("path")
        self._lock = threading.Lock()
        self._patch: Dict[str, Any] = {}
        self._logs: List[Dict[str, Any]] = []
        self.report_ready = threading.Event()
        self.finished = threading.Event()
        # Why the broker wants the job to stop (canceled, max_run_time), or lease_lost after a 409.
        self.stop_reason: Optional[str] = None
        self.lease_lost = False

    @property
    def canceled(self) -> bool:
        return self.stop_reason is not None

    def emit(self, info: Dict[str, Any]) -> None:
        if not isinstance(info, dict):
            raise TypeError("emit takes a dict, got %s" % type(info).__name__)
        if self.stop_reason is not None:
            raise JobCanceled(self.stop_reason)
        with self._lock:
            self._patch.update(info)
        self.report_ready.set()

    def log(self, message: str, level: str = "info", source: Optional[str] = None) -> None:
        line: Dict[str, Any] = {"message": str(message), "level": level,
                                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if source:
            line["source"] = source
        with self._lock:
            self._logs.append(line)
            # The broker keeps at most 10,000 lines a job; a runaway loop must not grow memory either.
            if len(self._logs) > 1000:
                del self._logs[: len(self._logs) - 1000]
        self.report_ready.set()

    def has_report(self) -> bool:
        with self._lock:
            return bool(self._patch or self._logs)

    def take_report(self) -> "tuple[Dict[str, Any], List[Dict[str, Any]]]":
        with self._lock:
            patch, logs = self._patch, self._logs
            self._patch, self._logs = {}, []
            self.report_ready.clear()
        return patch, logs

    def restore_report(self, patch: Dict[str, Any], logs: List[Dict[str, Any]]) -> None:
        """Puts back a report the broker did not receive; newer emits win over older ones."""
        with self._lock:
            self._patch = dict(patch, **self._patch)
            self._logs = (logs + self._logs)[-1000:]

    def finish(self) -> None:
        """Ends the job's heartbeats: wakes the thread keeping its lease."""
        self.finished.set()
        self.report_ready.set()

    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason


_local = threading.local()
_in_hand: Dict[str, Job] = {}
_in_hand_lock = threading.Lock()


def _enter(job: Job) -> None:
    _local.job = job
    with _in_hand_lock:
        _in_hand[job.request_id] = job


def _leave(job: Job) -> None:
    _local.job = None
    with _in_hand_lock:
        _in_hand.pop(job.request_id, None)


def current_job() -> Optional[Job]:
    """The job `predict` is running on this thread; from another thread (one `predict` started),
    the only job in hand."""
    job: Optional[Job] = getattr(_local, "job", None)
    if job is not None:
        return job
    with _in_hand_lock:
        if len(_in_hand) == 1:
            return next(iter(_in_hand.values()))
    return None


def _require_job(what: str) -> Job:
    job = current_job()
    if job is None:
        raise RuntimeError("%s is called from predict (no job is running on this thread)" % what)
    return job


def emit(info: Dict[str, Any]) -> None:
    """Merges `info` into the running job's info (top-level keys replace); status polls show it
    within a fraction of a second. Raises JobCanceled once the broker wants the job to stop."""
    _require_job("emit").emit(info)


def log(message: str, level: str = "info", source: Optional[str] = None) -> None:
    """Adds a log line to the running job (level: debug, info, warning, error, stdout, stderr)."""
    _require_job("log").log(message, level=level, source=source)
