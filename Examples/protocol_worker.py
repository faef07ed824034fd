#!/usr/bin/env python3
"""A Spool worker written from docs/worker-protocol.md alone: standard library, any host.

    SPOOL_BROKER_URL=http://127.0.0.1:8080 SPOOL_MODELS=demo/echo python3 Examples/protocol_worker.py

It leases jobs with a long-poll, heartbeats each one at a third of its lease (emitting progress),
runs it (here: sleeps `payload.seconds`, default 0.3, and echoes the payload), and completes it.
A 409 means the lease moved on: the job is dropped and nothing is reported. On SIGTERM it stops
leasing, lets running jobs finish for SPOOL_DRAIN_SECONDS, and releases the rest.

Environment: SPOOL_BROKER_URL (comma-separated replicas; the next is tried when one fails),
SPOOL_MODELS, SPOOL_API_KEY, SPOOL_CONCURRENCY (default 2), SPOOL_LEASE_SECONDS (default 30),
SPOOL_DRAIN_SECONDS (default 10), SPOOL_WORKER_ID. SPOOL_WRITE_LOG, if set, names a file that gets
one JSON line per write (request_id, attempt, action, HTTP status): what a test or an audit reads.
"""
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

BROKERS = [url.strip().rstrip("/") for url in os.environ.get("SPOOL_BROKER_URL", "http://127.0.0.1:8080").split(",") if url.strip()]
MODELS = [m.strip() for m in os.environ.get("SPOOL_MODELS", "demo/echo").split(",") if m.strip()]
KEY = os.environ.get("SPOOL_API_KEY")
CONCURRENCY = int(os.environ.get("SPOOL_CONCURRENCY", "2"))
LEASE_SECONDS = float(os.environ.get("SPOOL_LEASE_SECONDS", "30"))
DRAIN_SECONDS = float(os.environ.get("SPOOL_DRAIN_SECONDS", "10"))
WORKER_ID = os.environ.get("SPOOL_WORKER_ID", "%s-%d-py" % (socket.gethostname(), os.getpid()))
WRITE_LOG = os.environ.get("SPOOL_WRITE_LOG")

stopping = threading.Event()
log_lock = threading.Lock()
free_slots = threading.Semaphore(CONCURRENCY)
running = {}  # request_id -> job, for the drain
running_lock = threading.Lock()
current_broker = [0]


class LeaseLost(Exception):
    """409: another attempt owns the job now. Stop and report nothing."""


def call(path, body, timeout):
    """POSTs JSON to the current broker; on a connection error or a 5xx, tries the next one once."""
    data = json.dumps(body).encode()
    last_error = None
    for _ in range(len(BROKERS)):
        url = BROKERS[current_broker[0] % len(BROKERS)] + path
        request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
        if KEY:
            request.add_header("Authorization", "Bearer " + KEY)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return answer.status, json.loads(answer.read() or b"{}")
        except urllib.error.HTTPError as error:
            if error.code < 500:
                return error.code, json.loads(error.read() or b"{}")
            last_error = error
        except (OSError, ValueError) as error:  # refused, reset, timed out
            last_error = error
        current_broker[0] += 1
    raise ConnectionError(str(last_error))


def record(job, action, status):
    if not WRITE_LOG:
        return
    line = json.dumps({"request_id": job["request_id"], "attempt": job["attempt"], "action": action, "status": status,
                       "worker_id": WORKER_ID, "at": time.time()})
    with log_lock, open(WRITE_LOG, "a") as log:
        log.write(line + "\n")


def write(job, action, body, timeout=10):
    """A fenced write: the lease token goes with it. Raises LeaseLost on a 409."""
    body = dict(body, lease_token=job["lease_token"])
    status, answer = call("/v1/worker/jobs/%s/%s" % (job["request_id"], action), body, timeout)
    record(job, action, status)
    if status == 409:
        raise LeaseLost(answer.get("message", "lease lost"))
    if status >= 400:
        raise RuntimeError("%s refused (%d): %s" % (action, status, answer.get("message")))
    return answer


def keep_lease(job, done, lost):
    """Heartbeats at a third of the lease until the job is done; a 409 marks the job lost."""
    while not done.wait(LEASE_SECONDS / 3):
        try:
            answer = write(job, "heartbeat", {"info": {"heartbeat_at": time.time()}})
            if answer.get("stop"):
                lost.set()  # canceled or past its run time: stop soon
        except LeaseLost:
            lost.set()
            return
        except (ConnectionError, RuntimeError):
            pass  # the broker is unreachable: keep working and try again


def run(job):
    """Runs one job: the handler, then complete (or fail); a lost lease drops it silently."""
    done, lost = threading.Event(), threading.Event()
    keeper = threading.Thread(target=keep_lease, args=(job, done, lost), daemon=True)
    keeper.start()
    try:
        payload = job["payload"]
        seconds = float(payload.get("seconds", 0.3))
        steps = 3
        for step in range(steps):
            if lost.wait(seconds / steps):
                return
        outputs = {"echo": payload, "attempt": job["attempt"], "by": "protocol worker"}
        done.set()
        for _ in range(30):  # retried through broker outages; a retried complete is answered as a replay
            try:
                write(job, "complete", {"outputs": outputs, "info": {"progress": 1.0}})
                return
            except LeaseLost:
                return
            except ConnectionError:
                time.sleep(0.5)
    except Exception as error:  # noqa: BLE001 - any handler error fails the job
        try:
            write(job, "fail", {"error": "%s: %s" % (type(error).__name__, error), "retryable": False})
        except (LeaseLost, ConnectionError, RuntimeError):
            pass
    finally:
        done.set()
        with running_lock:
            running.pop(job["request_id"], None)
        free_slots.release()


def lease_loop():
    """Long-polls for as many jobs as there are free slots, until SIGTERM."""
    while not stopping.is_set():
        free_slots.acquire()
        wanted = 1
        while wanted < CONCURRENCY and free_slots.acquire(blocking=False):
            wanted += 1
        try:
            status, answer = call("/v1/worker/lease", {"worker_id": WORKER_ID, "models": MODELS, "max_jobs": wanted,
                                                       "wait_seconds": 10, "lease_seconds": LEASE_SECONDS}, timeout=15)
            jobs = answer.get("jobs", []) if status == 200 else []
        except ConnectionError:
            jobs = []
            time.sleep(0.5)
        for _ in range(wanted - len(jobs)):
            free_slots.release()
        if stopping.is_set():
            for job in jobs:  # leased as the drain began: hand them straight back
                try:
                    write(job, "release", {})
                except (LeaseLost, ConnectionError, RuntimeError):
                    pass
                free_slots.release()
            return
        for job in jobs:
            with running_lock:
                running[job["request_id"]] = job
            threading.Thread(target=run, args=(job,), daemon=True).start()


def main():
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    print("protocol worker started: %s serving %s at %s" % (WORKER_ID, ",".join(MODELS), ",".join(BROKERS)), flush=True)
    threading.Thread(target=lease_loop, daemon=True).start()
    stopping.wait()
    deadline = time.time() + DRAIN_SECONDS
    while time.time() < deadline:
        with running_lock:
            if not running:
                break
        time.sleep(0.1)
    with running_lock:
        left = list(running.values())
    for job in left:
        try:
            write(job, "release", {})
        except (LeaseLost, ConnectionError, RuntimeError):
            pass
    print("protocol worker stopped", flush=True)


if __name__ == "__main__":
    main()
