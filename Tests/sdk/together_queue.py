"""Drives the official `together` SDK (client.beta.jig.queue) against a live spool-broker.

Run by TogetherSDKTests with TOGETHER_BASE_URL pointing at the broker, TOGETHER_API_KEY set,
SPOOL_MODEL naming a model no other test uses and SPOOL_RUNNING_ID a job already claimed.
Prints one line per check; any failed check raises, and the exit status is non-zero.
"""
import os
import sys

import together

model = os.environ["SPOOL_MODEL"]
running_id = os.environ["SPOOL_RUNNING_ID"]
client = together.Together(max_retries=0)
queue = client.beta.jig.queue


def check(condition, message):
    if not condition:
        raise AssertionError(message)
    print("ok:", message)


# submit: the SDK reads `requestId` into request_id.
low = queue.submit(model=model, payload={"prompt": "low"}, priority=1)
high = queue.submit(model=model, payload={"prompt": "high"}, info={"user": "sdk"}, priority=9)
check(len(low.request_id) == 36 and low.request_id != high.request_id, "submit returns distinct request ids")

# status: every field parses into the SDK's typed model.
status = queue.retrieve(model=model, request_id=high.request_id)
check(status.status == "pending", "a new job is pending")
check(status.priority == 9 and status.inputs == {"prompt": "high"}, "status echoes priority and inputs")
check(status.info == {"user": "sdk"}, "status carries info")
check(status.created_at is not None and status.created_at.tzinfo is not None, "created_at parses as an aware datetime")
check(status.claimed_at is None and status.done_at is None and status.outputs is None, "unset fields are None")
check(status.retries == 0, "retries")
check(len(status.warnings) == 1 and "No live worker serves model" in status.warnings[0], "warnings say no worker serves the model")

# metrics: the claimed job (submitted by the test before this script) counts as running.
metrics = queue.metrics(model=model)
check((metrics.messages_waiting, metrics.messages_running, metrics.total_jobs) == (2, 1, 3), "metrics count waiting and running")

# cancel a pending job: 200 and {"status": "canceled"}.
canceled = queue.cancel(model=model, request_id=low.request_id)
check(canceled.status == "canceled", "cancel of a pending job answers canceled")
check(queue.retrieve(model=model, request_id=low.request_id).status == "canceled", "the canceled job stays canceled")

# cancel a running job: the SDK raises ConflictError for the 409, and the body carries the current status.
try:
    queue.cancel(model=model, request_id=running_id)
    raise AssertionError("cancel of a running job did not raise")
except together.ConflictError as error:
    check(error.status_code == 409, "cancel of a running job is a 409 (ConflictError)")
    check(error.body["status"] == "running", "the 409 body names the current status")
check(queue.retrieve(model=model, request_id=running_id).status == "running", "the running job is unchanged")

# errors: unknown job is NotFoundError with Together's QueueError shape.
try:
    queue.retrieve(model=model, request_id="00000000-0000-0000-0000-000000000000")
    raise AssertionError("status of an unknown job did not raise")
except together.NotFoundError as error:
    check(error.body["type"] == "not_found_error" and error.body["param"] == "request_id", "unknown job is a 404 QueueError")

# payload must be an object: the SDK sends what it is given; the broker answers 400.
try:
    queue.submit(model=model, payload=["not", "an", "object"])  # type: ignore[arg-type]
    raise AssertionError("a list payload was accepted")
except together.BadRequestError as error:
    check(error.body["param"] == "payload", "a non-object payload is a 400 naming payload")

# a wrong key is an AuthenticationError.
try:
    together.Together(api_key="wrong-key-0123456789", max_retries=0).beta.jig.queue.metrics(model=model)
    raise AssertionError("a wrong key was accepted")
except together.AuthenticationError as error:
    check(error.status_code == 401, "a wrong API key is a 401")

# clear: cancels the remaining pending job only.
cleared = queue.clear(model=model)
check(cleared.canceled_count == 1, "clear cancels the one pending job left")
metrics = queue.metrics(model=model)
check((metrics.messages_waiting, metrics.messages_running) == (0, 1), "after clear only the running job is left")

print("together SDK", together.__version__, "passed")
sys.exit(0)
