"""A job handler for `spool-worker --exec`, driven by its payload; used by the process tests.

payload.mode: ok (default), fail (exit 3 with an error on stderr), tempfail (exit 75: retryable),
sleep (payload.seconds, then ok), hang-first (the first attempt emits, then sleeps until killed),
payload.record: a file each run appends payload.n to (to count runs).
file (writes payload.bytes of seeded random bytes to $SPOOL_OUTPUT_DIR/video.bin; outputs name it and its SHA-256).
"""
import hashlib
import random
import json
import os
import sys
import time

job = json.loads(sys.stdin.readline())
payload = job["payload"]
mode = payload.get("mode", "ok")


def send(message):
    print(json.dumps(message), flush=True)


if "record" in payload:
    with open(payload["record"], "a") as record:
        record.write("%s\n" % payload.get("n"))

send({"emit": {"stage": "started", "attempt": job["attempt"]}})
send({"log": "handler started for " + job["request_id"]})
print("plain stdout line", flush=True)
print("a note on stderr", file=sys.stderr, flush=True)

if mode == "hang-first" and job["attempt"] == 1:
    send({"emit": {"first_attempt_pid": os.getpid(), "progress": 0.5}})
    time.sleep(600)
if mode == "slow-first" and job["attempt"] == 1:
    send({"emit": {"first_attempt_pid": os.getpid()}})
    time.sleep(payload["seconds"])
    send({"outputs": {"by": "first attempt"}})
    sys.exit(0)
if mode == "fail":
    print("CUDA error: out of memory", file=sys.stderr, flush=True)
    sys.exit(3)
if mode == "tempfail":
    sys.exit(75)
if mode == "sleep":
    send({"emit": {"pid": os.getpid()}})
    time.sleep(payload["seconds"])

if mode == "file":
    digest = hashlib.sha256()
    generator = random.Random(payload.get("seed", 1))
    remaining = payload["bytes"]
    with open(os.path.join(os.environ["SPOOL_OUTPUT_DIR"], "video.bin"), "wb") as f:
        while remaining > 0:
            piece = generator.randbytes(min(remaining, 1 << 20))
            f.write(piece)
            digest.update(piece)
            remaining -= len(piece)
    send({"outputs": {"video": "video.bin", "sha256": digest.hexdigest(), "attempt": job["attempt"]}})
    sys.exit(0)

send({"emit": {"progress": 1.0}})
send({"outputs": {"echo": payload, "attempt": job["attempt"], "by": "attempt %d" % job["attempt"]}})
