"""Checks a delivery the receiver logged against the `standardwebhooks` verifier: the genuine one
verifies; a forged body, a wrong secret and a stale timestamp are rejected.

Usage: webhook_verify.py <log file>. Prints one line per check; a failed check raises.
"""
import base64
import hashlib
import hmac
import json
import os
import sys
import time

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

secret = os.environ["SPOOL_WEBHOOK_SECRET"]
delivery = next(json.loads(line) for line in open(sys.argv[1]) if json.loads(line)["answer"] == 200)
headers, body = delivery["headers"], delivery["body"]


def check(condition, message):
    if not condition:
        raise AssertionError(message)
    print("ok:", message, flush=True)


def rejected(payload, hdrs, key=secret):
    try:
        Webhook(key).verify(payload, hdrs)
        return False
    except WebhookVerificationError:
        return True


check(Webhook(secret).verify(body, headers) == json.loads(body), "the genuine delivery verifies and its body is the payload")
check(rejected(body.replace("done", "failed", 1), headers), "a forged body is rejected")
other = "whsec_" + base64.b64encode(b"another secret of 32 bytes......").decode()
check(rejected(body, headers, key=other), "a signature from another secret is rejected")
stale = str(int(time.time()) - 3600)
key = base64.b64decode(secret[len("whsec_"):])
signature = base64.b64encode(hmac.new(key, ("%s.%s.%s" % (headers["webhook-id"], stale, body)).encode(), hashlib.sha256).digest()).decode()
check(rejected(body, dict(headers, **{"webhook-timestamp": stale, "webhook-signature": "v1," + signature})),
      "a correctly signed but hour-old delivery is rejected as stale")
print("standardwebhooks verification passed")
