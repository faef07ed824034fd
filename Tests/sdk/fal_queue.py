"""Drives `fal-client` (submit, status, result, cancel, subscribe) against a live spool-broker over HTTPS.

Run by FalSDKTests with FAL_QUEUE_RUN_HOST=<host>:<port>/fal, FAL_KEY, SSL_CERT_FILE trusting the
broker's certificate, SPOOL_APP naming an app no other test uses, SPOOL_IDLE_APP one no worker
serves, and SPOOL_WORKER_COMMAND: the spool-worker command line this script starts when it wants
jobs to run. Prints one line per check; a failed check raises and the exit status is non-zero.
"""
import os
import shlex
import subprocess
import sys
import time

import fal_client
import httpx
from waiting import wait_for

app = os.environ["SPOOL_APP"]
idle_app = os.environ["SPOOL_IDLE_APP"]
host = os.environ["FAL_QUEUE_RUN_HOST"]
auth = {"Authorization": "Key " + os.environ["FAL_KEY"]}


def check(condition, message):
    if not condition:
        raise AssertionError(message)
    print("ok:", message, flush=True)


# Queue positions, with no worker running: claim order is priority, then submission.
a = fal_client.submit(app, {"prompt": "a"})
b = fal_client.submit(app, {"prompt": "b"})
low = fal_client.submit(app, {"prompt": "low"}, priority="low")
c = fal_client.submit(app, {"prompt": "c"}, priority="normal")
check(a.status_url.startswith("https://" + host + "/" + app + "/requests/"), "submit answers with https URLs under the fal prefix")
positions = [fal_client.status(app, h.request_id).position for h in (a, b, c, low)]
check(positions == [0, 1, 2, 3], "IN_QUEUE positions follow claim order, low priority last: %s" % positions)

# Cancel of a queued request removes it; the ones behind move up.
check(fal_client.cancel(app, b.request_id) is None, "cancel of a queued request succeeds")
raw = httpx.put("https://%s/%s/requests/%s/cancel" % (host, app, b.request_id), headers=auth)
check(raw.status_code == 400 and raw.json()["status"] == "ALREADY_COMPLETED", "a second cancel says ALREADY_COMPLETED: %s %s" % (raw.status_code, raw.text))
canceled = fal_client.status(app, b.request_id)
check(isinstance(canceled, fal_client.Completed) and canceled.error_type == "request_cancelled", "a canceled request is COMPLETED with error_type")
check(fal_client.status(app, c.request_id).position == 1, "the request behind the canceled one moved up")
missing = httpx.put("https://%s/%s/requests/%s/cancel" % (host, app, "00000000-0000-0000-0000-000000000000"), headers=auth)
check(missing.status_code == 404 and missing.json()["status"] == "NOT_FOUND", "cancel of an unknown request says NOT_FOUND")

# result before completion is a clear error.
try:
    httpx.get("https://%s/%s/requests/%s" % (host, app, a.request_id), headers=auth).raise_for_status()
    raise AssertionError("result of a queued request succeeded")
except httpx.HTTPStatusError as error:
    check(error.response.status_code == 400 and "in progress" in error.response.json()["detail"], "result before completion is a 400 saying so")

# start_timeout: a request nobody starts ends with an error, 504 on its result, and is not retried.
late = fal_client.submit(idle_app, {"prompt": "nobody serves this"}, start_timeout=2)
done = wait_for("the late request to complete", lambda: isinstance(s := fal_client.status(idle_app, late.request_id), fal_client.Completed) and s)
check(done.error_type == "request_timeout", "a request not started in time is COMPLETED with error_type request_timeout")
started = time.time()
try:
    fal_client.result(idle_app, late.request_id)
    raise AssertionError("result of a timed-out request succeeded")
except fal_client.client.FalClientHTTPError as error:
    check(error.status_code == 504, "its result is a 504")
check(time.time() - started < 5, "the 504 is not retried")

# Start a worker; subscribe sees the queue move, the request run with logs, and its result.
worker = subprocess.Popen(shlex.split(os.environ["SPOOL_WORKER_COMMAND"]), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
try:
    updates = []
    result = fal_client.subscribe(app, {"prompt": "subscribed"}, with_logs=True, on_queue_update=updates.append, interval=0.05)
    check(result["echo"] == {"prompt": "subscribed"}, "subscribe returns the worker's outputs")
    queued = [u.position for u in updates if isinstance(u, fal_client.Queued)]
    check(len(queued) > 0 and queued == sorted(queued, reverse=True), "queue positions only go down: %s" % queued)
    progress = [u for u in updates if isinstance(u, fal_client.InProgress)]
    completed = [u for u in updates if isinstance(u, fal_client.Completed)]
    check(len(completed) == 1 and completed[0].error is None, "one COMPLETED update, without error")
    messages = [line["message"] for line in completed[0].logs]
    check(any(m.startswith("handler started for") for m in messages), "COMPLETED carries the handler's logs")
    check(all(set(line) >= {"message", "level", "source", "timestamp"} for line in completed[0].logs), "log lines have message, level, source, timestamp")
    check({line["level"] for line in completed[0].logs} >= {"INFO", "STDOUT", "STDERR"}, "levels in fal's words")
    check("inference_time" in completed[0].metrics, "COMPLETED carries metrics.inference_time")
    check(all(isinstance(u.logs, list) for u in progress), "IN_PROGRESS carries logs when asked")

    check(fal_client.result(app, a.request_id)["echo"] == {"prompt": "a"}, "result returns an earlier request's outputs")

    # Cancel of a running request asks its worker to stop; it ends COMPLETED with error_type request_cancelled.
    slow = fal_client.submit(app, {"mode": "sleep", "seconds": 60})
    wait_for("the slow request to start", lambda: isinstance(fal_client.status(app, slow.request_id), fal_client.InProgress))
    answer = httpx.put("https://%s/%s/requests/%s/cancel" % (host, app, slow.request_id), headers=auth)
    check(answer.status_code == 202 and answer.json()["status"] == "CANCELLATION_REQUESTED", "cancel of a running request says CANCELLATION_REQUESTED")
    stopped = wait_for("the running request to stop", lambda: isinstance(s := fal_client.status(app, slow.request_id), fal_client.Completed) and s, timeout=20)
    check(stopped.error_type == "request_cancelled", "the stopped request is COMPLETED as cancelled")
    try:
        fal_client.result(app, slow.request_id)
        raise AssertionError("result of a cancelled request succeeded")
    except fal_client.client.FalClientHTTPError as error:
        check(error.status_code == 400, "its result is a 400")
finally:
    worker.terminate()
    worker.wait(timeout=30)

print("fal-client", fal_client.__version__ if hasattr(fal_client, "__version__") else "", "passed")
sys.exit(0)
