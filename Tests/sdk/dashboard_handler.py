"""A job handler for `spool-worker --exec`, driven by its payload; used by dashboard_ui.py.

payload.steps + payload.seconds: run `steps` steps over `seconds`, emitting progress step/steps and
    one log line per step, then write a small PNG to $SPOOL_OUTPUT_DIR (an image output to preview).
payload.fail_first: the first attempt fails (exit 3, the error on stderr); later attempts succeed.
payload.sleep: seconds to sleep before answering (default 0.2), for the plain jobs.
Otherwise: answers {"echo": payload, "attempt": n}.
"""
import json
import os
import struct
import sys
import time
import zlib

job = json.loads(sys.stdin.readline())
payload = job["payload"]


def send(message):
    print(json.dumps(message), flush=True)


def png(width, height):
    """A small gradient PNG, standard library only."""
    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 255 // width, y * 255 // height, 160)) for x in range(width)) for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


if payload.get("fail_first") and job["attempt"] == 1:
    send({"log": "attempt 1: failing on purpose"})
    print("simulated failure on attempt 1", file=sys.stderr, flush=True)
    sys.exit(3)

steps = int(payload.get("steps", 0))
if steps:
    pause = float(payload.get("seconds", steps)) / steps
    for step in range(1, steps + 1):
        time.sleep(pause)
        send({"emit": {"progress": round(step / steps, 2), "step": step}})
        send({"log": "step %d of %d done" % (step, steps)})
    with open(os.path.join(os.environ["SPOOL_OUTPUT_DIR"], "preview.png"), "wb") as image:
        image.write(png(96, 64))
    send({"outputs": {"image": "preview.png", "steps": steps, "attempt": job["attempt"]}})
    sys.exit(0)

time.sleep(float(payload.get("sleep", 0.2)))
send({"emit": {"progress": 1.0}})
send({"outputs": {"echo": payload, "attempt": job["attempt"]}})
