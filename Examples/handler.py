# A Spool job handler in Python: run it with `spool-worker --exec "python3 Examples/handler.py"`.
# The job arrives as one JSON line on stdin; each stdout line is a JSON message for the broker.
import json
import sys
import time

job = json.loads(sys.stdin.readline())
prompt = job["payload"].get("prompt", "")

for step in range(1, 4):
    time.sleep(0.5)  # the model at work
    print(json.dumps({"emit": {"progress": round(step / 3, 2)}}), flush=True)

print(json.dumps({"log": f"reversed {len(prompt)} characters"}), flush=True)
print(json.dumps({"outputs": {"text": prompt[::-1]}}), flush=True)
