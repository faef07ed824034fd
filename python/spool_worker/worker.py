"""The worker loop: lease jobs for free slots, run `predict` on a thread per job, keep each lease
from a heartbeat thread, upload FileOutputs, then complete or fail; drain on SIGTERM."""
from __future__ import annotations

import json
import math
import mimetypes
import os
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from . import job as job_module
from .broker import BrokerClient, BrokerRefused, BrokerUnavailable, LeaseLost
from .health import HealthServer
from .inputs import InputDownloads, InputTooLarge, InputTooSlow
from .job import FileOutput, Job, JobCanceled, RetryableError


def default_worker_id() -> str:
    return "%s-%d-%s" % (socket.gethostname().split(".")[0], os.getpid(), uuid.uuid4().hex[:4])


@dataclass
class WorkerOptions:
    """What `python -m spool_worker` flags and the SPOOL_* environment variables set."""

    brokers: List[str] = field(default_factory=lambda: ["http://127.0.0.1:8080"])
    models: List[str] = field(default_factory=list)
    # One job at a time: a GPU.
    concurrency: int = 1
    lease_seconds: float = 30
    drain_seconds: float = 30
    wait_seconds: float = 20
    api_key: Optional[str] = None
    worker_id: str = field(default_factory=default_worker_id)
    ca_file: Optional[str] = None
    health_port: Optional[int] = None
    # Emits within this long of each other go in one heartbeat.
    report_delay_seconds: float = 0.2

    @staticmethod
    def from_environment(environ: Optional[Dict[str, str]] = None, base: Optional["WorkerOptions"] = None) -> "WorkerOptions":
        """The defaults, with what SPOOL_BROKER_URL and SPOOL_MODELS (comma-separated), SPOOL_CONCURRENCY,
        SPOOL_LEASE_SECONDS, SPOOL_DRAIN_SECONDS, SPOOL_API_KEY, SPOOL_WORKER_ID, SPOOL_CA_FILE and
        SPOOL_HEALTH_PORT set (the Swift worker's variables, and the health port)."""
        env = os.environ if environ is None else environ
        options = base or WorkerOptions()

        def listed(name: str) -> List[str]:
            return [part.strip() for part in env.get(name, "").split(",") if part.strip()]

        def number(name: str) -> Optional[float]:
            text = env.get(name, "")
            if not text:
                return None
            try:
                return float(text)
            except ValueError:
                raise ValueError("%s must be a number, got %r" % (name, text)) from None

        if listed("SPOOL_BROKER_URL"):
            options.brokers = listed("SPOOL_BROKER_URL")
        options.models = listed("SPOOL_MODELS") or options.models
        for name, attribute in (("SPOOL_LEASE_SECONDS", "lease_seconds"), ("SPOOL_DRAIN_SECONDS", "drain_seconds")):
            value = number(name)
            if value is not None:
                setattr(options, attribute, value)
        for name, attribute in (("SPOOL_CONCURRENCY", "concurrency"), ("SPOOL_HEALTH_PORT", "health_port")):
            value = number(name)
            if value is not None:
                if value != int(value):
                    raise ValueError("%s must be a whole number" % name)
                setattr(options, attribute, int(value))
        options.api_key = env.get("SPOOL_API_KEY") or options.api_key
        options.worker_id = env.get("SPOOL_WORKER_ID") or options.worker_id
        options.ca_file = env.get("SPOOL_CA_FILE") or options.ca_file
        return options

    def validate(self) -> None:
        if not self.models:
            raise ValueError("name at least one model to serve (--model or SPOOL_MODELS)")
        if not 1 <= self.concurrency <= 100:
            raise ValueError("concurrency must be between 1 and 100, got %d" % self.concurrency)
        if not 1 <= self.lease_seconds <= 3600:
            raise ValueError("the lease must be between 1 and 3600 seconds, got %g" % self.lease_seconds)
        if not 0 <= self.wait_seconds <= 30:
            raise ValueError("the lease wait must be between 0 and 30 seconds, got %g" % self.wait_seconds)
        if self.drain_seconds < 0:
            raise ValueError("the drain time must not be negative")
        if not self.worker_id or len(self.worker_id.encode()) > 200:
            raise ValueError("the worker id must be 1 to 200 bytes")
        for url in self.brokers:
            if not url.startswith(("http://", "https://")):
                raise ValueError("a broker URL starts with http:// or https://, got %r" % url)


class Worker:
    """Runs one Sprocket (any object with `setup()` and `predict(args) -> dict`) against the brokers."""

    def __init__(self, sprocket: Any, options: WorkerOptions) -> None:
        options.validate()
        self.sprocket = sprocket
        self.options = options
        self.broker = BrokerClient(options.brokers, api_key=options.api_key, ca_file=options.ca_file)
        self.stopping = threading.Event()
        self.slots = threading.Semaphore(options.concurrency)
        self.running: Dict[str, Job] = {}
        self.running_lock = threading.Lock()
        self.set_up = False
        self.counts = {"completed": 0, "failed": 0, "lost": 0}
        self.counts_lock = threading.Lock()
        self.host = socket.gethostname()

    def log(self, message: str) -> None:
        print("spool_worker: %s" % message, file=sys.stderr, flush=True)

    # Running the process.

    def run(self) -> int:
        """setup(), then lease and run jobs until SIGTERM or SIGINT; then drain. Answers the exit
        status: 0 after a drain, 1 when setup() failed (nothing was leased)."""
        health = None
        if self.options.health_port is not None:
            health = HealthServer(self.options.health_port, self.healthy, self.metrics)
            self.log("health on port %d (/health, /metrics)" % health.port)
        try:
            setup = getattr(self.sprocket, "setup", None)
            if setup is not None:
                setup()
        except BaseException as error:  # noqa: BLE001 - any setup error ends the process before a lease
            traceback.print_exc()
            self.log("setup() failed, so no job was leased: %s: %s" % (type(error).__name__, error))
            return 1
        self.set_up = True
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
            signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        self.log("worker %s serving %s at %s" % (self.options.worker_id, ", ".join(self.options.models), ", ".join(self.options.brokers)))
        leaser = threading.Thread(target=self.lease_loop, name="spool-lease", daemon=True)
        leaser.start()
        while not self.stopping.wait(0.5):
            pass
        self.drain()
        if health is not None:
            health.close()
        return 0

    def stop(self) -> None:
        """What SIGTERM does: stop leasing, then drain."""
        self.stopping.set()

    def drain(self) -> None:
        """Lets running jobs finish for drain_seconds, then releases the rest without using a retry."""
        deadline = time.monotonic() + self.options.drain_seconds
        with self.running_lock:
            count = len(self.running)
        self.log("stopping: no new leases; %d job(s) running get %gs to finish" % (count, self.options.drain_seconds))
        while time.monotonic() < deadline:
            with self.running_lock:
                if not self.running:
                    break
            time.sleep(0.05)
        with self.running_lock:
            left = list(self.running.values())
        for job in left:
            # Whatever predict returns later is dropped: the job is someone else's from here.
            job.lease_lost = True
            job.request_stop("shutdown")
            job.finish()
            patch, logs = job.take_report()
            try:
                self.broker.write(job.request_id, "release", job.lease_token, {"info": patch or None, "logs": logs or None}, timeout=10)
                self.log("released %s: it did not finish within the drain" % job.request_id)
            except (LeaseLost, BrokerRefused, BrokerUnavailable) as error:
                self.log("could not release %s (%s): it is requeued when its lease expires" % (job.request_id, error))

    def count(self, name: str) -> None:
        with self.counts_lock:
            self.counts[name] += 1

    def healthy(self) -> "tuple[bool, str]":
        if not self.set_up:
            return False, "setup() has not finished"
        if not self.broker.reachable:
            return False, "no broker answered the last call"
        return True, ""

    def metrics(self) -> Dict[str, int]:
        with self.running_lock:
            in_hand = len(self.running)
        return {"jobs_in_hand": in_hand, "jobs_completed_total": self.counts["completed"],
                "jobs_failed_total": self.counts["failed"], "jobs_lost_total": self.counts["lost"]}

    # Leasing.

    def lease_loop(self) -> None:
        backoff = 0.2
        while not self.stopping.is_set():
            self.slots.acquire()
            wanted = 1
            while wanted < self.options.concurrency and self.slots.acquire(blocking=False):
                wanted += 1
            leases: List[Dict[str, Any]] = []
            try:
                if not self.stopping.is_set():
                    leases = self.broker.lease(self.options.worker_id, self.options.models, wanted,
                                               self.options.wait_seconds, self.options.lease_seconds, self.host)
                backoff = 0.2
            except (BrokerUnavailable, BrokerRefused) as error:
                self.log("lease failed (%s); retrying in %.1fs" % (error, backoff))
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 5)
            for lease in leases:
                job = Job(lease)
                wanted -= 1
                if self.stopping.is_set():
                    # Leased as SIGTERM came: hand it straight back.
                    try:
                        self.broker.write(job.request_id, "release", job.lease_token, {}, timeout=10)
                    except (LeaseLost, BrokerRefused, BrokerUnavailable):
                        pass
                    self.slots.release()
                    continue
                with self.running_lock:
                    self.running[job.request_id] = job
                threading.Thread(target=self.run_job, args=(job,), name="spool-job-" + job.request_id, daemon=True).start()
            for _ in range(wanted):
                self.slots.release()

    # Running one job.

    def run_job(self, job: Job) -> None:
        keeper = threading.Thread(target=self.keep_lease, args=(job,), name="spool-lease-" + job.request_id, daemon=True)
        keeper.start()
        job_module._enter(job)
        downloads: Optional[InputDownloads] = None
        try:
            args: Any = job.payload
            if getattr(self.sprocket, "download_inputs", False):
                downloads = InputDownloads(int(getattr(self.sprocket, "max_input_bytes", 1 << 30)),
                                           schemes=getattr(self.sprocket, "input_schemes", ("https",)), ca_file=self.options.ca_file)
                args = downloads.localize(args)
            result = self.sprocket.predict(args)
            if job.lease_lost:
                return
            if not isinstance(result, dict):
                raise TypeError("predict must return a dict (the job's outputs), got %s" % type(result).__name__)
            outputs = self.upload_files(job, result)
            # Checked here so a value JSON cannot carry (NaN, an object) fails the job with a reason.
            json.dumps(outputs, allow_nan=False)
            job.finish()
            keeper.join()
            self.finish(job, "complete", {"outputs": outputs})
        except LeaseLost:
            job.lease_lost = True
        except BaseException as error:  # noqa: BLE001 - whatever predict raises fails the job
            if job.lease_lost:
                return
            job.finish()
            keeper.join()
            retryable = isinstance(error, (RetryableError, _UploadFailed))
            if isinstance(error, JobCanceled) or (job.canceled and not retryable):
                message = "Stopped as the broker asked (%s)." % (job.stop_reason or getattr(error, "reason", "canceled"))
                retryable = False
            else:
                message = "%s: %s" % (type(error).__name__, error)
                if not isinstance(error, (_UploadFailed, InputTooLarge, InputTooSlow)):
                    job.log("".join(traceback.format_exception(type(error), error, error.__traceback__))[-16000:], level="error", source="spool_worker")
            self.finish(job, "fail", {"error": message[:8000], "retryable": retryable})
        finally:
            job.finish()
            job_module._leave(job)
            if downloads is not None:
                downloads.close()
            with self.running_lock:
                self.running.pop(job.request_id, None)
            self.slots.release()

    def finish(self, job: Job, action: str, body: Dict[str, Any]) -> None:
        """Completes or fails the job with its last report, retrying through broker outages (a
        repeated write is recognised by its lease token); a 409 drops the job silently."""
        patch, logs = job.take_report()
        body = dict(body, info=patch or None, logs=logs or None)
        deadline = time.monotonic() + max(60.0, self.options.lease_seconds)
        backoff = 0.2
        while True:
            if job.lease_lost:
                return
            try:
                self.broker.write(job.request_id, action, job.lease_token, body)
                self.count("completed" if action == "complete" else "failed")
                return
            except LeaseLost:
                self.count("lost")
                return
            except BrokerRefused as error:
                if action == "complete" and error.status in (400, 413):
                    # The outputs themselves are refused: say why in a fail instead of losing the job.
                    action, body = "fail", {"error": "The broker refused the outputs: %s" % error.body.get("message", error), "retryable": False}
                    continue
                self.log("%s of %s refused: %s" % (action, job.request_id, error))
                return
            except BrokerUnavailable as error:
                if time.monotonic() > deadline:
                    self.log("gave up on %s of %s (%s): it is requeued when its lease expires" % (action, job.request_id, error))
                    return
                time.sleep(backoff)
                backoff = min(backoff * 2, 5)

    def upload_files(self, job: Job, value: Any) -> Any:
        """`value` with each FileOutput uploaded and replaced by its file object."""
        if isinstance(value, FileOutput):
            content_type = value.content_type or mimetypes.guess_type(value.name)[0] or "application/octet-stream"
            if not os.path.isfile(value.path):
                raise _UploadFailed("The output file %r does not exist" % value.path)
            backoff = 0.2
            for attempt in range(5):
                try:
                    return self.broker.upload(job.request_id, job.lease_token, value.path, value.name, content_type)
                except BrokerUnavailable as error:
                    if attempt == 4:
                        raise _UploadFailed("The output file %r could not be uploaded: %s" % (value.name, error)) from None
                    time.sleep(backoff)
                    backoff *= 2
                except BrokerRefused as error:
                    raise _UploadFailed("The output file %r was refused: %s" % (value.name, error)) from None
        if isinstance(value, dict):
            return {key: self.upload_files(job, item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.upload_files(job, item) for item in value]
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("predict returned %r, which JSON cannot carry" % value)
        if not isinstance(value, (str, int, float, bool, type(None))) and callable(getattr(value, "tolist", None)):
            # NumPy scalars and arrays, torch tensors: their plain Python values.
            return self.upload_files(job, value.tolist())
        return value

    # The lease.

    def keep_lease(self, job: Job) -> None:
        """Heartbeats at a third of the lease until the job is finished, sending emits and log lines
        within report_delay_seconds of the first; hears stop requests and lost leases."""
        interval = self.options.lease_seconds / 3
        next_beat = time.monotonic() + interval
        backoff = 0.2
        while not job.finished.is_set():
            wait = next_beat - time.monotonic()
            if wait > 0:
                job.report_ready.wait(wait)
                if job.finished.is_set():
                    return
                if job.has_report() and time.monotonic() < next_beat:
                    # Coalesce a burst of emits into one heartbeat.
                    if job.finished.wait(self.options.report_delay_seconds):
                        return
                if not job.has_report() and time.monotonic() < next_beat:
                    continue
            patch, logs = job.take_report()
            try:
                answer = self.broker.write(job.request_id, "heartbeat", job.lease_token, {
                    "info": patch or None, "logs": logs or None, "lease_seconds": self.options.lease_seconds}, timeout=max(5.0, interval))
                backoff = 0.2
                next_beat = time.monotonic() + interval
                if answer.get("stop") and not job.canceled:
                    job.request_stop(answer.get("stop_reason") or "canceled")
                    self.log("the broker asked %s to stop (%s)" % (job.request_id, job.stop_reason))
            except LeaseLost as error:
                self.log("lost the lease of %s (%s); dropping it" % (job.request_id, error))
                job.lease_lost = True
                job.request_stop("lease_lost")
                self.count("lost")
                return
            except BrokerRefused as error:
                # Refused however often it is sent (an info patch too large): drop it, keep the lease.
                self.log("a heartbeat of %s was refused (%s); its report is dropped" % (job.request_id, error))
                next_beat = time.monotonic() + backoff
                backoff = min(backoff * 2, 5)
            except BrokerUnavailable:
                job.restore_report(patch, logs)
                next_beat = time.monotonic() + backoff
                backoff = min(backoff * 2, 5)


class _UploadFailed(Exception):
    """A FileOutput that could not be uploaded: the attempt fails as retryable, never completes."""
