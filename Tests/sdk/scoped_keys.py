"""The real `together` and `fal-client` SDKs with scoped keys: a client key works, a worker key and an
admin-only key are refused with 403 naming the scope (the SDKs raise their usual errors).

Run by KeyScopeTests with TOGETHER_BASE_URL, FAL_QUEUE_RUN_HOST (<host>:<port>/fal), SSL_CERT_FILE,
SPOOL_CLIENT_KEY, SPOOL_WORKER_KEY, SPOOL_ADMIN_KEY and SPOOL_MODEL set.
"""
import os

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
print("scoped keys passed")
