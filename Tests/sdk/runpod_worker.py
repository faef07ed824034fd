"""A RunPod serverless worker as RunPod's own docs write one: `runpod.serverless.start` from the
`runpod` package, unmodified. Pointed at Spool only by the environment `spool-broker runpod-env`
prints. SPOOL_RUNPOD_MODE picks the handler:

- sync: a plain function; sends a progress update, raises when the input says `raise`.
- generator: yields input.chunks chunks, with return_aggregate_stream.
- async: an async function that sleeps input.seconds (cancel reaches it through job-stop), with
  concurrency_modifier giving SPOOL_RUNPOD_CONCURRENCY (the batch take).

Every output names RUNPOD_POD_ID, so a test can tell which worker finished a job.
"""
import asyncio
import os
import time

import runpod

pod = os.environ["RUNPOD_POD_ID"]
mode = os.environ.get("SPOOL_RUNPOD_MODE", "sync")
concurrency = int(os.environ.get("SPOOL_RUNPOD_CONCURRENCY", "1"))


def sync_handler(job):
    job_input = job["input"]
    if job_input.get("raise"):
        raise ValueError("asked to fail: " + str(job_input["raise"]))
    runpod.serverless.progress_update(job, {"stage": "halfway", "percent": 50})
    time.sleep(float(job_input.get("seconds", 0.3)))
    return {"echo": job_input, "pod": pod}


def generator_handler(job):
    for index in range(int(job["input"].get("chunks", 3))):
        time.sleep(0.05)
        yield {"chunk": index, "pod": pod}


async def async_handler(job):
    seconds = float(job["input"].get("seconds", 0.2))
    # A rescuing worker finishes a long job at once (SPOOL_RUNPOD_MAX_SECONDS).
    await asyncio.sleep(min(seconds, float(os.environ.get("SPOOL_RUNPOD_MAX_SECONDS", seconds))))
    return {"slept": job["input"].get("seconds", 0.2), "pod": pod}


handlers = {"sync": sync_handler, "generator": generator_handler, "async": async_handler}
config = {"handler": handlers[mode]}
if mode == "generator":
    config["return_aggregate_stream"] = True
if mode == "async":
    config["concurrency_modifier"] = lambda current: concurrency

print("runpod worker", pod, "mode", mode, "starting", flush=True)
runpod.serverless.start(config)
