"""Drives RunPod's client SDK (`runpod.Endpoint`) and unmodified RunPod workers (runpod_worker.py)
against a live spool-broker, both from the `runpod` package on PyPI.

Run by RunPodTests with RUNPOD_ENDPOINT_BASE_URL=<broker>/v2, SPOOL_BROKER_URL, SPOOL_KEY (all
scopes), SPOOL_ENDPOINT (an endpoint id no other test uses), SPOOL_BROKER_BIN and SPOOL_WORKER_BIN
(the built executables), SPOOL_WEBHOOK_SECRET, TOGETHER_BASE_URL and TOGETHER_API_KEY. The broker
runs with --runpod-ping-seconds 1. Workers get their environment from `spool-broker runpod-env`
and nothing else. Prints one line per check; a failed check raises and the exit status is non-zero.
"""
import http.server
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time

import requests
import runpod
import together
from standardwebhooks.webhooks import Webhook
from waiting import wait_for

broker = os.environ["SPOOL_BROKER_URL"]
key = os.environ["SPOOL_KEY"]
endpoint_id = os.environ["SPOOL_ENDPOINT"]
here = os.path.dirname(os.path.abspath(__file__))
runpod.api_key = key
endpoint = runpod.Endpoint(endpoint_id)
v2 = broker + "/v2/" + endpoint_id
bare = {"Authorization": key}
logs = tempfile.mkdtemp(prefix="spool-runpod-")
workers = []
passed = False
started = time.time()


def check(condition, message):
    if not condition:
        raise AssertionError(message)
    print("ok: [%5.1f s]" % (time.time() - started), message, flush=True)


def raw_status(job_id):
    answer = requests.get(v2 + "/status/" + job_id, headers=bare, timeout=10)
    answer.raise_for_status()
    return answer.json()


def status_is(job_id, *words):
    return lambda: (lambda s: s if s["status"] in words else None)(raw_status(job_id))


def runpod_env(pod):
    lines = subprocess.run(
        [os.environ["SPOOL_BROKER_BIN"], "runpod-env", "--endpoint", endpoint_id, "--broker-url", broker, "--api-key", key,
         "--ping-seconds", "1", "--pod-id", pod],
        check=True, capture_output=True, text=True).stdout.splitlines()
    return dict(line.split("=", 1) for line in lines)


def start_worker(pod, mode, **extra):
    """An unmodified RunPod worker in its own process group (its ping process dies with it)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "SPOOL_", "TOGETHER_"))}
    environment.update(runpod_env(pod))
    environment["SPOOL_RUNPOD_MODE"] = mode
    environment.update({k: str(v) for k, v in extra.items()})
    log = open(os.path.join(logs, pod + ".log"), "w")
    process = subprocess.Popen(
        [sys.executable, "-u", os.path.join(here, "runpod_worker.py")], env=environment, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    process.log_path = log.name
    workers.append(process)
    return process


def worker_log(process):
    with open(process.log_path) as log:
        return log.read()


def stop_worker(process, sig=signal.SIGKILL):
    """SIGKILL by default: a RunPod worker told SIGTERM finishes its 30 s take long-poll first."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    if sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def get_requests_to_v2():
    """GET requests the broker has answered under /v2 (takes, stops and pings), from its metrics."""
    text = requests.get(broker + "/metrics", headers={"Authorization": "Bearer " + key}, timeout=10).text
    total = 0
    for line in text.splitlines():
        if line.startswith("spool_http_request_duration_seconds_count") and 'route="/v2/**"' in line and 'method="GET"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


try:
    # --- No worker yet: the queue, policies and purge. ---
    queued = [endpoint.run({"n": n}) for n in range(3)]
    check(all(job.status() == "IN_QUEUE" for job in queued), "run answers ids whose status is IN_QUEUE")
    low = endpoint.run({"input": {"n": "low"}, "policy": {"lowPriority": True}})
    spool_view = requests.get(
        broker + "/v1/queue/status", params={"model": endpoint_id, "request_id": low.job_id}, headers={"Authorization": "Bearer " + key},
        timeout=10).json()
    check(spool_view["priority"] == -1 and spool_view["status"] == "pending",
          "the same job through Spool's own API: pending, and policy.lowPriority is priority -1")
    health = endpoint.health()
    check(health["jobs"]["inQueue"] == 4 and health["workers"] == {"idle": 0, "running": 0},
          "health counts the queued jobs and no worker: %s" % health)
    short = endpoint.run({"input": {"n": "ttl"}, "policy": {"ttl": 1000}})
    check(wait_for("ttl", status_is(short.job_id, "TIMED_OUT"), 15)["status"] == "TIMED_OUT",
          "a job not started within policy.ttl ends TIMED_OUT")
    purged = endpoint.purge_queue()
    check(purged == {"removed": 4, "status": "completed"}, "purge_queue removes the queued jobs: %s" % purged)
    check(raw_status(queued[0].job_id)["status"] == "CANCELLED", "a purged job is CANCELLED")
    bad = requests.post(v2 + "/run", json={"input": "not an object"}, headers=bare, timeout=10)
    check(bad.status_code == 400 and bad.json()["param"] == "input", "a run whose input is not an object is a 400 naming it")
    bad = requests.post(v2 + "/run", json={"input": {}, "policy": {"executionTimeout": 5}}, headers=bare, timeout=10)
    check(bad.status_code == 400 and "policy.executionTimeout" in bad.text, "an executionTimeout under a second is a 400")
    missing = requests.get(v2 + "/status/00000000-0000-0000-0000-000000000000", headers=bare, timeout=10)
    check(missing.status_code == 404, "status of an unknown id is a 404")
    check(requests.get(v2 + "/health", timeout=10).status_code == 401, "a request without a key is a 401")

    # --- A plain handler: output, progress, errors, run_sync, webhook, the same jobs from Together. ---
    deliveries = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            deliveries.append((dict(self.headers), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    receiver = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook = "http://127.0.0.1:%d/hook" % receiver.server_address[1]

    sync_worker = start_worker("sync-1", "sync")
    job = endpoint.run({"word": "hello"})
    check(job.output(timeout=60) == {"echo": {"word": "hello"}, "pod": "sync-1"}, "output() returns the handler's return value")
    check(job.status() == "COMPLETED", "the job is COMPLETED")
    done = raw_status(job.job_id)
    check(done["delayTime"] >= 0 and done["executionTime"] >= 250 and done["id"] == job.job_id,
          "status has delayTime and executionTime in ms, and the request id, not the attempt's: %s" % done)

    slow = endpoint.run({"word": "slow", "seconds": 3})
    progress = wait_for("progress", lambda: (lambda s: s if s.get("output", {}).get("stage") == "halfway" else None)(raw_status(slow.job_id)))
    check(progress["status"] == "IN_PROGRESS" and progress["output"]["percent"] == 50,
          "progress_update shows as IN_PROGRESS with the progress as output: %s" % progress)
    check(slow.output(timeout=60)["echo"]["word"] == "slow", "the job with progress completes")

    failing = endpoint.run({"raise": "boom"})
    failed = wait_for("the failure", status_is(failing.job_id, "FAILED"))
    error = json.loads(failed["error"])
    check(error["error_type"] == "<class 'ValueError'>" and "boom" in error["error_message"] and "Traceback" in error["error_traceback"],
          "a handler that raises ends FAILED with the worker's error (type, message, traceback)")

    check(endpoint.run_sync({"word": "sync"}, timeout=60) == {"echo": {"word": "sync"}, "pod": "sync-1"},
          "run_sync returns the output")

    hooked = endpoint.run({"input": {"word": "hook"}, "webhook": hook})
    check(hooked.output(timeout=60)["echo"]["word"] == "hook", "a job with a webhook completes")
    headers, body = wait_for("the webhook", lambda: deliveries[0] if deliveries else None)
    payload = Webhook(os.environ["SPOOL_WEBHOOK_SECRET"]).verify(body, headers)
    check(payload["id"] == hooked.job_id and payload["status"] == "COMPLETED" and payload["output"]["echo"] == {"word": "hook"},
          "the webhook carries RunPod's status body, signed (Standard Webhooks): %s" % body)

    queue = together.Together(max_retries=0).beta.jig.queue
    from_together = queue.submit(model=endpoint_id, payload={"word": "together"})
    wait_for("the Together job", lambda: queue.retrieve(model=endpoint_id, request_id=from_together.request_id).status == "done")
    seen = queue.retrieve(model=endpoint_id, request_id=from_together.request_id)
    check(seen.outputs == {"output": {"echo": {"word": "together"}, "pod": "sync-1"}},
          "a job submitted with the together SDK is run by the RunPod worker: %s" % seen.outputs)
    check(raw_status(from_together.request_id)["status"] == "COMPLETED", "and RunPod's status shows the same job")
    health = endpoint.health()
    check(health["workers"]["idle"] + health["workers"]["running"] == 1 and health["jobs"]["completed"] >= 5
          and health["jobs"]["failed"] >= 1, "health sees the live worker and the ended jobs: %s" % health)
    stop_worker(sync_worker)

    spool_worker = subprocess.Popen(
        [os.environ["SPOOL_WORKER_BIN"], "--broker", broker, "--model", endpoint_id, "--api-key", key,
         "--exec", "%s %s" % (shlex.quote(sys.executable), shlex.quote(os.path.join(here, "exec_handler.py")))],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers.append(spool_worker)
    by_spool = endpoint.run({"word": "spool"})
    output = by_spool.output(timeout=60)
    check(output["echo"] == {"word": "spool"} and output["attempt"] == 1,
          "a job submitted with runpod is run by a spool-worker; its outputs are the output: %s" % output)
    spool_worker.terminate()
    spool_worker.wait(timeout=30)

    # --- A generator: stream, each chunk once and in order, and the aggregate. ---
    generator_worker = start_worker("gen-1", "generator")
    streamed = endpoint.run({"chunks": 4})
    chunks = list(streamed.stream())
    check(chunks == [{"chunk": i, "pod": "gen-1"} for i in range(4)], "stream() yields every chunk once, in order: %s" % chunks)
    check(streamed.output(timeout=30) == [{"chunk": i, "pod": "gen-1"} for i in range(4)],
          "with return_aggregate_stream the output is the chunks")
    again = requests.get(v2 + "/stream/" + streamed.job_id, headers=bare, timeout=10).json()
    check(again["stream"] == [] and again["status"] == "COMPLETED", "a chunk is not handed out twice")
    stop_worker(generator_worker)

    # --- An async handler with concurrency 3: the batch take, cancel through job-stop, bounded idle takes. ---
    batch = [endpoint.run({"seconds": 7}) for _ in range(3)]
    async_worker = start_worker("async-1", "async", SPOOL_RUNPOD_CONCURRENCY=3)
    wait_for("three jobs running at once", lambda: all(raw_status(j.job_id)["status"] == "IN_PROGRESS" for j in batch), 30)
    check(True, "concurrency_modifier 3 takes three jobs (job-take-batch) and runs them at once")
    check(all(j.output(timeout=30)["pod"] == "async-1" for j in batch), "the three complete")
    check(all("retries" not in raw_status(j.job_id) for j in batch),
          "pings naming the three jobs kept their 3 s leases through 7 s of work: none was requeued")
    long = endpoint.run({"seconds": 120})
    wait_for("the long job to start", status_is(long.job_id, "IN_PROGRESS"))
    check(long.cancel() == {"id": long.job_id, "status": "CANCELLED"}, "cancel of a running job answers CANCELLED")
    wait_for("the cancel", status_is(long.job_id, "CANCELLED"), 15)
    wait_for("the worker to stop the job", lambda: "Stopping job." in worker_log(async_worker), 15)
    check(True, "the running job ends CANCELLED and its worker stopped it (job-stop)")
    check(endpoint.run({"seconds": 0.1}).output(timeout=30)["pod"] == "async-1", "the worker goes on taking jobs after a stop")
    timed = endpoint.run({"input": {"seconds": 120}, "policy": {"executionTimeout": 2000}})
    check(wait_for("the run deadline", status_is(timed.job_id, "TIMED_OUT"), 20)["status"] == "TIMED_OUT",
          "a job past policy.executionTimeout is stopped through job-stop and ends TIMED_OUT")
    time.sleep(2)
    before = get_requests_to_v2()
    time.sleep(10)
    idle = get_requests_to_v2() - before
    check(idle <= 25, "an idle worker sends %d GETs in 10 s (pings each second, long-polled takes and stops)" % idle)
    stop_worker(async_worker)

    # --- Faults: a worker SIGKILLed mid-job; a stale worker's late result. ---
    killed = start_worker("kill-1", "async")
    victim = endpoint.run({"seconds": 60})
    wait_for("the victim to start", status_is(victim.job_id, "IN_PROGRESS"))
    stop_worker(killed, signal.SIGKILL)
    rescuer = start_worker("rescue-1", "async", SPOOL_RUNPOD_MAX_SECONDS=0.2)
    check(victim.output(timeout=60)["pod"] == "rescue-1", "a job whose worker was SIGKILLed is requeued and finished by another")
    check(raw_status(victim.job_id).get("retries") == 1, "the lost attempt counts as a retry")
    stop_worker(rescuer)

    stale = start_worker("stale-1", "async")
    frozen = endpoint.run({"seconds": 6})
    wait_for("the job to start", status_is(frozen.job_id, "IN_PROGRESS"))
    stop_worker(stale, signal.SIGSTOP)
    wait_for("the lease to expire", status_is(frozen.job_id, "IN_QUEUE"), 15)
    fresh = start_worker("fresh-1", "async", SPOOL_RUNPOD_MAX_SECONDS=0.2)
    check(frozen.output(timeout=60)["pod"] == "fresh-1", "the frozen worker's job is requeued and finished by another")
    stop_worker(fresh)
    stop_worker(stale, signal.SIGCONT)
    wait_for("the stale result to be refused", lambda: "Failed to return job results. | 409" in worker_log(stale), 30)
    check(raw_status(frozen.job_id)["output"]["pod"] == "fresh-1", "the stale worker's late result is refused (409) and changes nothing")
    stop_worker(stale)
    passed = True
    print("passed", flush=True)
finally:
    for process in workers:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                process.kill()
            process.wait()
    for name in sorted(os.listdir(logs)):
        with open(os.path.join(logs, name)) as log:
            text = log.read()
        if not passed:
            print("--- %s (last lines)\n%s" % (name, "\n".join(text.splitlines()[-15:])), flush=True)
        os.unlink(os.path.join(logs, name))
    os.rmdir(logs)
