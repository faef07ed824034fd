#!/usr/bin/env python3
"""What the Python worker SDK costs: jobs/s of one worker process with a no-op predict (beside the
Swift SDK's worker in the same run), and the pickup latency from submit to predict's start.

    swift build -c release && .venv/bin/pip install ./python
    .venv/bin/python python/bench.py [--jobs 3000] [--pickups 200] [--bin-dir .build/release]

Starts its own broker on an embedded PostgreSQL cluster under /tmp (removed after) and prints
JSON figures; BENCHMARKS.md keeps them.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

NOOP = '''
import os, time
from spool_worker import Sprocket, current_job

class Noop(Sprocket):
    def predict(self, args):
        if args.get("pickup"):
            with open(os.environ["BENCH_STARTS"], "a") as file:
                file.write("%s %.6f\\n" % (current_job().request_id, time.time()))
        return {}
'''


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def call(base: str, method: str, path: str, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def parse_time(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def drain(base: str, model: str, jobs: int, start_worker) -> float:
    """Submits `jobs` no-op jobs, starts one worker, and answers jobs/s from the first claim to the
    last completion (by the database's clock: worker start-up is not counted)."""
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(lambda i: call(base, "POST", "/v1/queue/submit", {"model": model, "payload": {"prompt": "x", "steps": 0}})["requestId"], range(jobs)))
    worker = start_worker(model)
    try:
        while True:
            last = call(base, "GET", "/v1/queue/status?model=%s&request_id=%s" % (model, ids[-1]))
            if last["status"] == "done":
                break
            if worker.poll() is not None:
                raise SystemExit("the worker exited with %s" % worker.returncode)
            time.sleep(0.2)
        first = call(base, "GET", "/v1/queue/status?model=%s&request_id=%s" % (model, ids[0]))
        return (jobs - 1) / (parse_time(last["done_at"]) - parse_time(first["claimed_at"]))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000, help="no-op jobs drained per worker")
    parser.add_argument("--pickups", type=int, default=200, help="single jobs submitted to an idle worker")
    default_bin = os.path.join(ROOT, ".build", "release") if os.path.exists(os.path.join(ROOT, ".build", "release", "spool-broker")) else os.path.join(ROOT, ".build", "debug")
    parser.add_argument("--bin-dir", default=default_bin)
    options = parser.parse_args()

    scratch = tempfile.mkdtemp(prefix="spool-pybench-")
    os.chmod(scratch, 0o755)
    with open(os.path.join(scratch, "bench_noop.py"), "w") as file:
        file.write(NOOP)
    port = free_port()
    base = "http://127.0.0.1:%d" % port
    broker_log = open(os.path.join(scratch, "broker.log"), "wb")
    broker = subprocess.Popen([os.path.join(options.bin_dir, "spool-broker"), "--port", str(port), "--data-dir", os.path.join(scratch, "pg"),
                               "--log-level", "warning"], stdout=broker_log, stderr=subprocess.STDOUT)
    logs = []
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                call(base, "GET", "/readyz")
                break
            except OSError:
                if time.monotonic() > deadline or broker.poll() is not None:
                    raise SystemExit("the broker did not start: see %s" % broker_log.name)
                time.sleep(0.2)

        def python_worker(concurrency: int):
            def start(model: str):
                log = open(os.path.join(scratch, "py-%s.log" % model.replace("/", "_")), "wb")
                logs.append(log)
                return subprocess.Popen([sys.executable, "-m", "spool_worker", "bench_noop:Noop", "--broker", base, "--model", model,
                                         "--concurrency", str(concurrency)], cwd=scratch, stdout=log, stderr=subprocess.STDOUT,
                                        env=dict(os.environ, BENCH_STARTS=os.path.join(scratch, "starts")))
            return start

        def swift_worker(concurrency: int):
            def start(model: str):
                log = open(os.path.join(scratch, "swift-%s.log" % model.replace("/", "_")), "wb")
                logs.append(log)
                return subprocess.Popen([os.path.join(options.bin_dir, "spool-example-worker")], stdout=log, stderr=subprocess.STDOUT,
                                        env=dict(os.environ, SPOOL_BROKER_URL=base, SPOOL_MODELS=model, SPOOL_CONCURRENCY=str(concurrency)))
            return start

        figures = {}
        for name, start in (("python_c1", python_worker(1)), ("swift_c1", swift_worker(1)),
                            ("python_c4", python_worker(4)), ("swift_c4", swift_worker(4))):
            figures["drain_jobs_per_s_" + name] = round(drain(base, "bench/%s-%s" % (name, uuid.uuid4().hex[:6]), options.jobs, start), 1)
            print(json.dumps({name: figures["drain_jobs_per_s_" + name]}), file=sys.stderr, flush=True)

        # Pickup: one job at a time to an idle worker; submit (client clock) to predict's start.
        model = "bench/pickup-" + uuid.uuid4().hex[:6]
        worker = python_worker(1)(model)
        starts_path = os.path.join(scratch, "starts")
        open(starts_path, "w").close()
        call(base, "POST", "/v1/queue/submit", {"model": model, "payload": {"pickup": True}})  # warm: imports, connections
        time.sleep(2)
        latencies = []
        try:
            for _ in range(options.pickups):
                time.sleep(0.1)
                submitted = time.time()
                request_id = call(base, "POST", "/v1/queue/submit", {"model": model, "payload": {"pickup": True}})["requestId"]
                while True:
                    with open(starts_path) as file:
                        found = [line.split() for line in file if line.startswith(request_id)]
                    if found:
                        latencies.append((float(found[0][1]) - submitted) * 1000)
                        break
                    time.sleep(0.0005)
                while call(base, "GET", "/v1/queue/status?model=%s&request_id=%s" % (model, request_id))["status"] != "done":
                    time.sleep(0.002)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
        figures.update({
            "pickup_to_predict_ms_p50": round(statistics.median(latencies), 2),
            "pickup_to_predict_ms_p99": round(percentile(latencies, 0.99), 2),
            "pickup_to_predict_ms_max": round(max(latencies), 2),
            "pickups": len(latencies),
            "jobs_per_drain": options.jobs,
            "binaries": options.bin_dir,
            "python": platform.python_version(),
            "date": datetime.date.today().isoformat(),
            "cores": os.cpu_count(),
        })
        print(json.dumps(figures, indent=2))
    finally:
        broker.send_signal(signal.SIGTERM)
        broker.wait(timeout=60)
        for log in logs + [broker_log]:
            log.close()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
