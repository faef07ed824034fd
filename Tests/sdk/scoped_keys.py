"""The real `together` and `fal-client` SDKs with scoped keys: a client key works, a worker key and an
admin-only key are refused with 403 naming the scope; another tenant's job is a 404 exactly like an
unknown one; a tenant past its submit rate gets a 429 (the SDKs raise their usual errors).

Run by KeyScopeTests with TOGETHER_BASE_URL, FAL_QUEUE_RUN_HOST (<host>:<port>/fal), SSL_CERT_FILE,
SPOOL_CLIENT_KEY, SPOOL_WORKER_KEY, SPOOL_ADMIN_KEY, SPOOL_OTHER_TENANT_KEY (tenant globex),
SPOOL_LIMITED_KEY (tenant limited, 0.1 submits/s, burst 1) and SPOOL_MODEL set.
"""
import os
import time
import uuid

import fal_client
import fal_client.client
import together

model = os.environ["SPOOL_MODEL"]


def check(condition, message):
    if not condition:
        raise AssertionError(message)
    print("ok:", message)


def queue(key):
    return together.Together(api_key=key, max_retries=0).beta.jig.queue


submitted = queue(os.environ["SPOOL_CLIENT_KEY"]).submit(model=model, payload={"prompt": "scoped"})
check(len(submitted.request_id) == 36, "together: a client key submits")

for name, key in (("worker", os.environ["SPOOL_WORKER_KEY"]), ("admin", os.environ["SPOOL_ADMIN_KEY"])):
    try:
        queue(key).submit(model=model, payload={"prompt": "refused"})
        raise AssertionError("together: a %s key submitted" % name)
    except together.PermissionDeniedError as error:
        check(error.status_code == 403 and "'client' scope" in str(error), "together: a %s key's submit is PermissionDeniedError (403) naming the client scope" % name)
    try:
        queue(key).retrieve(model=model, request_id=submitted.request_id)
        raise AssertionError("together: a %s key read a job" % name)
    except together.PermissionDeniedError:
        check(True, "together: a %s key cannot read a job's status" % name)

# fal's queue (FAL_QUEUE_RUN_HOST points fal-client at the broker): an app id is the model.
handle = fal_client.SyncClient(key=os.environ["SPOOL_CLIENT_KEY"]).submit(model, arguments={"prompt": "fal"})
check(len(handle.request_id) == 36, "fal-client: a client key submits")
try:
    fal_client.SyncClient(key=os.environ["SPOOL_WORKER_KEY"]).submit(model, arguments={"prompt": "refused"})
    raise AssertionError("fal-client: a worker key submitted")
except fal_client.client.FalClientHTTPError as error:
    check(error.status_code == 403 and "'client' scope" in error.response.text, "fal-client: a worker key's submit is FalClientHTTPError 403 naming the scope")

# Tenants: another tenant's job reads exactly as one that does not exist.
other = os.environ["SPOOL_OTHER_TENANT_KEY"]
unknown = str(uuid.uuid4())


def together_not_found(request_id):
    try:
        queue(other).retrieve(model=model, request_id=request_id)
    except together.NotFoundError as error:
        return str(error).replace(request_id, "<id>")
    raise AssertionError("together: tenant globex read job %s" % request_id)


theirs, nobodys = together_not_found(submitted.request_id), together_not_found(unknown)
check(theirs == nobodys, "together: another tenant's job is NotFoundError (404), word for word as an unknown id's (%r, %r)" % (theirs, nobodys))
try:
    queue(other).cancel(model=model, request_id=submitted.request_id)
    raise AssertionError("together: tenant globex canceled another tenant's job")
except together.NotFoundError:
    check(True, "together: another tenant cannot cancel the job")
check(queue(os.environ["SPOOL_CLIENT_KEY"]).retrieve(model=model, request_id=submitted.request_id).status == "pending",
      "together: the job is still its tenant's and pending")


def fal_not_found(request_id):
    try:
        fal_client.SyncClient(key=other).status(model, request_id)
    except fal_client.client.FalClientHTTPError as error:
        check(error.status_code == 404, "fal-client: a 404 for %s" % ("the other tenant's job" if request_id != unknown else "an unknown id"))
        return error.response.text.replace(request_id, "<id>")
    raise AssertionError("fal-client: tenant globex read job %s" % request_id)


check(fal_not_found(handle.request_id) == fal_not_found(unknown), "fal-client: another tenant's job reads as an unknown one")

# Quotas: the limited tenant's second submit within its rate is a 429 with Retry-After, nothing stored.
limited = os.environ["SPOOL_LIMITED_KEY"]
queue(limited).submit(model=model, payload={"prompt": "first"})
try:
    queue(limited).submit(model=model, payload={"prompt": "second"})
    raise AssertionError("together: the limited tenant submitted past its rate")
except together.RateLimitError as error:
    body = error.response.json()
    check(error.status_code == 429 and error.response.headers.get("retry-after") is not None,
          "together: past the rate is RateLimitError (429) with Retry-After")
    check(body.get("limit") == "submits_per_second", "together: the error names the limit: %s" % body.get("limit"))
# fal-client retries a 429 (up to MAX_ATTEMPTS with backoff); with one attempt it raises at once.
attempts = fal_client.client.MAX_ATTEMPTS
fal_client.client.MAX_ATTEMPTS = 1
try:
    fal_client.SyncClient(key=limited).submit(model, arguments={"prompt": "third"})
    raise AssertionError("fal-client: the limited tenant submitted past its rate")
except fal_client.client.FalClientHTTPError as error:
    check(error.status_code == 429 and "submits_per_second" in error.response.text, "fal-client: past the rate is FalClientHTTPError 429")
finally:
    fal_client.client.MAX_ATTEMPTS = attempts
started = time.monotonic()
late = fal_client.SyncClient(key=limited).submit(model, arguments={"prompt": "retried"})
check(len(late.request_id) == 36 and time.monotonic() - started > 0.5,
      "fal-client: with its own retries the submit goes through once the bucket refills (%.1f s)" % (time.monotonic() - started))
print("scoped keys passed")
