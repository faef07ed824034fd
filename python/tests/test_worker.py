"""spool_worker against a real broker and PostgreSQL, with worker processes started as users start
them (`python -m spool_worker module:Class …`) and clients over HTTP (the together SDK for progress)."""
from __future__ import annotations

import hashlib
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
import together
from conftest import API_KEY, Broker, Workers, wait_until


def read(path: str) -> str:
    with open(path) as file:
        return file.read()


def test_the_example_runs_twenty_jobs_after_one_setup(broker: Broker, workers: Workers, model: str, tmp_path) -> None:
    loads = str(tmp_path / "loads")
    ids = [broker.submit(model, {"num_frames": 5 + i}) for i in range(20)]
    worker = workers.start("video_generator:VideoGenerator", model, env={"VIDEO_EXAMPLE_LOADS": loads})
    for index, request_id in enumerate(ids):
        job = broker.wait_for_status(model, request_id, ("done", "failed"))
        assert job["status"] == "done", job
        video = job["outputs"]["video"]
        assert video["file_name"] == "output.mp4" and video["file_size"] == (5 + index) * 1024
        assert job["info"]["progress"] == 1.0 and job["info"]["current_frame"] == 5 + index
    # The last video, downloaded by the client, is what the handler wrote.
    expected = b"".join(bytes([frame % 256]) * 1024 for frame in range(24))
    assert broker.download(video["url"]) == hashlib.sha256(expected).hexdigest().encode() + b":%d" % len(expected)
    assert video["sha256"] == hashlib.sha256(expected).hexdigest()
    assert read(loads).split() == [str(worker.pid)], "setup ran once for twenty jobs"


def test_the_example_runs_as_a_script_configured_by_the_environment(broker: Broker, workers: Workers, model: str) -> None:
    from conftest import ROOT, free_port

    request_id = broker.submit(model, {"num_frames": 3})
    script = os.path.join(ROOT, "Examples", "python_worker", "video_generator.py")
    dead = "http://127.0.0.1:%d" % free_port()
    workers.start("", model, command=[sys.executable, script], env={
        "SPOOL_BROKER_URL": dead + "," + broker.url, "SPOOL_MODELS": model, "SPOOL_API_KEY": API_KEY, "SPOOL_CONCURRENCY": "2"})
    job = broker.wait_for_status(model, request_id, ("done", "failed"))
    assert job["status"] == "done" and job["outputs"]["video"]["file_size"] == 3 * 1024, job


def test_progress_is_visible_through_the_together_sdk_while_predict_runs(broker: Broker, workers: Workers, model: str) -> None:
    client = together.Together(base_url=broker.url, api_key=API_KEY, max_retries=0)
    queue = client.beta.jig.queue
    submitted = queue.submit(model=model, payload={"num_frames": 40, "seconds_per_frame": 0.1})
    workers.start("video_generator:VideoGenerator", model)
    seen = []

    def midway():
        status = queue.retrieve(model=model, request_id=submitted.request_id)
        if status.status == "running" and status.info and 0 < status.info.get("progress", 0) < 1:
            seen.append(status.info)
        return len(seen) >= 3 and seen[-1]["current_frame"] > seen[0]["current_frame"]

    wait_until(midway, timeout=60, interval=0.2, what="progress to move while the job runs")
    assert seen[0]["total_frames"] == 40
    done = wait_until(lambda: (lambda s: s if s.status == "done" else None)(queue.retrieve(model=model, request_id=submitted.request_id)))
    assert done.info["progress"] == 1.0 and done.outputs["video"]["file_size"] == 40 * 1024


def test_a_50_mib_file_output_reaches_the_client_byte_for_byte(broker: Broker, workers: Workers, model: str) -> None:
    size = 50 * 1024 * 1024 + 17
    request_id = broker.submit(model, {"bytes": size})
    workers.start("sample_sprockets:LargeFile", model)
    job = broker.wait_for_status(model, request_id, ("done", "failed"), timeout=120)
    assert job["status"] == "done", job
    file = job["outputs"]["file"]
    assert file["file_size"] == size and file["sha256"] == job["outputs"]["sha256"]
    assert broker.download(file["url"]) == job["outputs"]["sha256"].encode() + b":%d" % size


def test_an_output_file_the_broker_refuses_fails_the_attempt_as_retryable_and_never_completes(broker: Broker, workers: Workers, model: str) -> None:
    request_id = broker.submit(model, {"bytes": 53 * 1024 * 1024})
    workers.start("sample_sprockets:LargeFile", model)
    job = broker.wait_for_status(model, request_id, ("done", "failed"), timeout=180)
    assert job["status"] == "failed" and job["outputs"] is None
    # Retryable: it ran again until the retry limit (3), each attempt refused.
    assert job["retries"] == 3
    assert "could not be uploaded" in job["error"] or "was refused" in job["error"]


def test_a_worker_killed_mid_job_leaves_it_to_another(broker: Broker, workers: Workers, model: str, tmp_path) -> None:
    request_id = broker.submit(model, {"first_attempt_seconds": 600})
    first = workers.start("sample_sprockets:Echo", model, lease_seconds=3)
    wait_until(lambda: os.path.exists(tmp_path / ("started-%s" % request_id)), what="the first worker to start the job")
    first.send_signal(signal.SIGKILL)
    second = workers.start("sample_sprockets:Echo", model, lease_seconds=3)
    job = broker.wait_for_status(model, request_id, ("done", "failed"), timeout=60)
    assert job["status"] == "done" and job["retries"] == 1
    assert job["outputs"]["attempt"] == 2 and job["outputs"]["pid"] == second.pid


def test_a_cancel_stops_predict_within_one_heartbeat(broker: Broker, workers: Workers, model: str, tmp_path) -> None:
    client = together.Together(base_url=broker.url, api_key=API_KEY, max_retries=0)
    request_id = broker.submit(model, {})
    lease_seconds = 6
    workers.start("sample_sprockets:EmitsUntilCanceled", model, lease_seconds=lease_seconds)
    wait_until(lambda: (broker.status(model, request_id).get("info") or {}).get("step", 0) > 3, what="the job to emit")
    canceled_at = time.time()
    client.beta.jig.queue.cancel(model=model, request_id=request_id, extra_body={"cancel_running": True})
    marker = tmp_path / ("canceled-%s" % request_id)
    wait_until(lambda: os.path.exists(marker), timeout=30, what="predict to hear the cancel")
    stopped_at, reason, canceled_flag = read(str(marker)).split()
    assert float(stopped_at) - canceled_at < lease_seconds / 3, "predict stopped within one heartbeat period"
    assert reason == "canceled" and canceled_flag == "True"
    job = broker.wait_for_status(model, request_id, ("canceled", "failed", "done"))
    assert job["status"] == "canceled", job


def test_sigterm_lets_the_running_job_finish_and_leases_nothing_more(broker: Broker, workers: Workers, model: str, tmp_path) -> None:
    request_id = broker.submit(model, {"seconds": 2})
    worker = workers.start("sample_sprockets:Echo", model, "--drain-seconds", "20")
    wait_until(lambda: os.path.exists(tmp_path / ("started-%s" % request_id)), what="the job to start")
    worker.send_signal(signal.SIGTERM)
    later = broker.submit(model, {})
    assert worker.wait(timeout=30) == 0
    assert broker.status(model, request_id)["status"] == "done"
    assert broker.status(model, later)["status"] == "pending", "a draining worker leases nothing"
    assert not os.path.exists(tmp_path / ("started-%s" % later))


def test_sigterm_releases_a_job_that_outlasts_the_drain(broker: Broker, workers: Workers, model: str, tmp_path) -> None:
    request_id = broker.submit(model, {"first_attempt_seconds": 600})
    worker = workers.start("sample_sprockets:Echo", model, "--drain-seconds", "1")
    wait_until(lambda: os.path.exists(tmp_path / ("started-%s" % request_id)), what="the job to start")
    stopped = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert time.monotonic() - stopped < 10
    job = broker.status(model, request_id)
    assert job["status"] == "pending" and job["retries"] == 0, "released without using a retry"
    # Another worker takes it at once (a release needs no lease expiry).
    workers.start("sample_sprockets:Echo", model)
    assert broker.wait_for_status(model, request_id, ("done",), timeout=30)["outputs"]["attempt"] == 2


def test_a_predict_that_blocks_for_three_leases_keeps_its_lease(broker: Broker, workers: Workers, model: str) -> None:
    request_id = broker.submit(model, {"seconds": 7.5})
    workers.start("sample_sprockets:Echo", model, lease_seconds=2)
    job = broker.wait_for_status(model, request_id, ("done", "failed"), timeout=60)
    assert job["status"] == "done" and job["retries"] == 0 and job["outputs"]["attempt"] == 1


def test_a_failing_setup_exits_non_zero_and_never_leases(broker: Broker, workers: Workers, model: str) -> None:
    request_id = broker.submit(model, {})
    worker = workers.start("sample_sprockets:BrokenSetup", model)
    assert worker.wait(timeout=30) != 0
    output = workers.output(worker)
    assert "CUDA driver version is insufficient" in output and "setup() failed" in output
    assert broker.status(model, request_id)["status"] == "pending"


def test_errors_fail_the_job_with_their_type_and_a_retryable_error_is_retried(broker: Broker, workers: Workers, model: str) -> None:
    bad = broker.submit(model, {})
    flaky = broker.submit(model, {"retryable": True})
    workers.start("sample_sprockets:Fails", model)
    job = broker.wait_for_status(model, bad, ("failed", "done"))
    assert job["status"] == "failed" and job["error"] == "ValueError: num_frames must be positive" and job["retries"] == 0
    job = broker.wait_for_status(model, flaky, ("failed", "done"))
    assert job["status"] == "done" and job["retries"] == 1 and job["outputs"] == {"attempt": 2}
    status, answer = broker.call("GET", "/v1/queue/status?model=%s&request_id=%s&logs=1" % (model, bad))
    assert status == 200 and any("Traceback" in line["message"] for line in answer["logs"]), answer


def test_outputs_json_cannot_carry_fail_the_job_with_a_reason(broker: Broker, workers: Workers, model: str) -> None:
    ids = {kind: broker.submit(model, {"kind": kind}) for kind in ("array", "nan", "list", "object")}
    workers.start("sample_sprockets:Odd", model)
    assert broker.wait_for_status(model, ids["array"], ("done", "failed"))["outputs"] == {"matrix": [[1, 2], [3, 4]], "items": [1, 2]}
    for kind, reason in (("nan", "ValueError: predict returned nan"), ("list", "TypeError: predict must return a dict"),
                         ("object", "TypeError: Object of type object is not JSON serializable")):
        job = broker.wait_for_status(model, ids[kind], ("done", "failed"))
        assert job["status"] == "failed" and job["error"].startswith(reason) and job["retries"] == 0, job


def test_a_worker_that_lost_its_lease_drops_the_job_silently(broker: Broker, workers: Workers, model: str, tmp_path) -> None:
    request_id = broker.submit(model, {"first_attempt_seconds": 4})
    paused = workers.start("sample_sprockets:Echo", model, lease_seconds=2)
    wait_until(lambda: os.path.exists(tmp_path / ("started-%s" % request_id)), what="the job to start")
    paused.send_signal(signal.SIGSTOP)  # a worker frozen past its lease (a GC pause, a partition)
    other = workers.start("sample_sprockets:Echo", model, lease_seconds=2)
    job = broker.wait_for_status(model, request_id, ("done",), timeout=60)
    assert job["outputs"]["pid"] == other.pid
    other.send_signal(signal.SIGKILL)
    other.wait()
    paused.send_signal(signal.SIGCONT)
    # Its complete is refused (409) and dropped; the job keeps the other worker's answer, and the
    # worker lives on to take the next job.
    later = broker.submit(model, {})
    assert broker.wait_for_status(model, later, ("done",), timeout=60)["outputs"]["pid"] == paused.pid
    assert broker.status(model, request_id)["outputs"]["pid"] == other.pid
    assert paused.poll() is None


def test_health_and_metrics(broker: Broker, workers: Workers, model: str) -> None:
    from conftest import free_port

    port = free_port()
    workers.start("sample_sprockets:Echo", model, "--health-port", str(port))
    health = "http://127.0.0.1:%d" % port
    wait_until(lambda: _get(health + "/health")[0] == 200, what="/health to answer 200")
    broker.wait_for_status(model, broker.submit(model, {}), ("done",))
    status, text = _get(health + "/metrics")
    assert status == 200 and "spool_worker_jobs_completed_total 1" in text and "spool_worker_jobs_in_hand 0" in text
    # A worker whose only broker is gone says so.
    dead = "http://127.0.0.1:%d" % free_port()
    port = free_port()
    workers.start("sample_sprockets:Echo", model, "--health-port", str(port), brokers=[dead])
    wait_until(lambda: _get("http://127.0.0.1:%d/health" % port)[0] == 503, what="/health to answer 503")


def test_a_dead_broker_first_in_the_list_is_skipped(broker: Broker, workers: Workers, model: str) -> None:
    from conftest import free_port

    request_id = broker.submit(model, {"n": 1})
    workers.start("sample_sprockets:Echo", model, brokers=["http://127.0.0.1:%d" % free_port(), broker.url])
    assert broker.wait_for_status(model, request_id, ("done",))["outputs"]["echo"] == {"n": 1}


def test_inputs_named_by_url_are_downloaded_and_removed_after_the_job(broker: Broker, workers: Workers, model: str, tmp_path) -> None:
    content = os.urandom(1024 * 1024)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "cat.png").write_bytes(content)
    (tmp_path / "site" / "huge.bin").write_bytes(b"x" * (4 * 1024 * 1024))
    class Site(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path / "site"), **kwargs)

        def do_GET(self):  # noqa: N802 - the standard library's name
            if self.path == "/elsewhere":  # a redirect to a scheme the Sprocket does not allow
                self.send_response(302)
                self.send_header("Location", "ftp://127.0.0.1/secret")
                self.end_headers()
                return
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    site = "http://127.0.0.1:%d" % server.server_address[1]
    try:
        good = broker.submit(model, {"image": site + "/cat.png", "more": [site + "/cat.png"], "plain": "https is not fetched twice"})
        huge = broker.submit(model, {"image": site + "/huge.bin"})
        redirected = broker.submit(model, {"image": site + "/elsewhere"})
        workers.start("sample_sprockets:Downloads", model)
        job = broker.wait_for_status(model, good, ("done", "failed"))
        assert job["status"] == "done", job
        outputs = job["outputs"]
        assert outputs["sizes"] == [len(content)] * 2 and outputs["sha256"] == hashlib.sha256(content).hexdigest()
        assert outputs["plain"] == "https is not fetched twice"
        assert not any(os.path.exists(path) for path in outputs["paths"]), "the downloads are removed after the job"
        job = broker.wait_for_status(model, huge, ("done", "failed"))
        assert job["status"] == "failed" and "InputTooLarge" in job["error"] and job["retries"] == 0
        job = broker.wait_for_status(model, redirected, ("done", "failed"))
        assert job["status"] == "failed" and "redirect to a scheme inputs may not use" in job["error"], job
    finally:
        server.shutdown()


def _get(url: str) -> "tuple[int, str]":
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def test_the_package_is_typed_strictly() -> None:
    from conftest import ROOT

    checked = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", "spool_worker"],
                             cwd=os.path.join(ROOT, "python"), capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
