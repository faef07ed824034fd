"""Fixtures for the spool_worker tests: a real spool-broker on its embedded PostgreSQL, real worker
processes (`python -m spool_worker`), and clients over HTTP (the together SDK where it matters).

The broker binary comes from SPOOL_BIN_DIR, else the package's .build/debug (`swift build` first;
./scripts/test does both).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TESTS = os.path.dirname(os.path.abspath(__file__))
API_KEY = "spool-python-worker-tests"
# Under the 52 MiB the broker accepts per file: the 50 MiB output passes, a larger one is refused.
MAX_FILE_BYTES = 52 * 1024 * 1024 + 4096


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition: Callable[[], Any], timeout: float = 60, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %gs waiting for %s" % (timeout, what))
        time.sleep(interval)


class Broker:
    def __init__(self, url: str, process: subprocess.Popen, log_path: str) -> None:
        self.url = url
        self.process = process
        self.log_path = log_path

    def call(self, method: str, path: str, body: Optional[Dict[str, Any]] = None, key: Optional[str] = API_KEY) -> "tuple[int, Any]":
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if key:
            request.add_header("Authorization", "Bearer " + key)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                raw = answer.read()
                return answer.status, json.loads(raw) if raw and answer.headers.get_content_type() == "application/json" else raw
        except urllib.error.HTTPError as error:
            raw = error.read()
            return error.code, json.loads(raw) if raw else {}

    def submit(self, model: str, payload: Dict[str, Any], priority: int = 0) -> str:
        status, answer = self.call("POST", "/v1/queue/submit", {"model": model, "payload": payload, "priority": priority})
        assert status == 200, answer
        return answer["requestId"]

    def status(self, model: str, request_id: str) -> Dict[str, Any]:
        status, answer = self.call("GET", "/v1/queue/status?model=%s&request_id=%s" % (model, request_id))
        assert status == 200, answer
        return answer

    def wait_for_status(self, model: str, request_id: str, statuses: "tuple[str, ...]", timeout: float = 60) -> Dict[str, Any]:
        return wait_until(lambda: (lambda job: job if job["status"] in statuses else None)(self.status(model, request_id)),
                          timeout=timeout, what="job %s to be %s" % (request_id, "/".join(statuses)))

    def download(self, url: str) -> bytes:
        request = urllib.request.Request(url, headers={"Authorization": "Bearer " + API_KEY})
        with urllib.request.urlopen(request, timeout=120) as answer:
            digest = hashlib.sha256()
            size = 0
            while True:
                piece = answer.read(1 << 20)
                if not piece:
                    break
                digest.update(piece)
                size += len(piece)
        return digest.hexdigest().encode() + b":" + str(size).encode()


def pytest_configure(config: Any) -> None:
    """The worker processes import spool_worker as installed (`pip install ./python`, as users do):
    refuse to test an installed copy older than the source."""
    where = subprocess.run([sys.executable, "-c", "import spool_worker; print(spool_worker.__file__)"], cwd="/",
                           capture_output=True, text=True)
    if where.returncode != 0:
        pytest.exit("spool_worker is not installed in %s: pip install ./python" % sys.executable, returncode=2)
    installed = os.path.dirname(where.stdout.strip())
    source = os.path.join(ROOT, "python", "spool_worker")
    if installed != source:
        for name in sorted(os.listdir(source)):
            if name.endswith(".py") and open(os.path.join(source, name), "rb").read() != open(os.path.join(installed, name), "rb").read():
                pytest.exit("the installed spool_worker (%s) differs from python/spool_worker/%s: pip install ./python" % (installed, name), returncode=2)


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    bin_dir = os.environ.get("SPOOL_BIN_DIR") or os.path.join(ROOT, ".build", "debug")
    binary = os.path.join(bin_dir, "spool-broker")
    if not os.access(binary, os.X_OK):
        pytest.exit("no spool-broker at %s: run `swift build` (./scripts/test does) or set SPOOL_BIN_DIR" % binary, returncode=2)
    data_dir = tempfile.mkdtemp(prefix="spool-pytest-")
    os.chmod(data_dir, 0o755)
    port = free_port()
    log_path = os.path.join(data_dir, "broker.log")
    log = open(log_path, "wb")
    process = subprocess.Popen([binary, "--port", str(port), "--data-dir", os.path.join(data_dir, "pg"), "--api-key", API_KEY,
                                "--max-file-bytes", str(MAX_FILE_BYTES), "--log-level", "notice"],
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = "http://127.0.0.1:%d" % port
    found = Broker(url, process, log_path)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError("spool-broker exited with %s:\n%s" % (process.returncode, open(log_path).read()[-4000:]))
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    try:
        wait_until(ready, timeout=120, interval=0.2, what="the broker to be ready")
        yield found
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


class Workers:
    """Worker processes a test starts: `python -m spool_worker`, stopped when the test ends."""

    def __init__(self, broker: Broker, scratch: str) -> None:
        self.broker = broker
        self.scratch = scratch
        self.processes: List[subprocess.Popen] = []

    def start(self, target: str, model: str, *arguments: str, brokers: Optional[List[str]] = None, cwd: Optional[str] = None,
              env: Optional[Dict[str, str]] = None, lease_seconds: float = 30, command: Optional[List[str]] = None) -> subprocess.Popen:
        """`python -m spool_worker target --model model …`, or `command` as it is (configured by `env`)."""
        if command is None:
            command = [sys.executable, "-m", "spool_worker", target, "--model", model, "--lease-seconds", str(lease_seconds),
                       "--api-key", API_KEY, "--worker-id", "w-%s" % uuid.uuid4().hex[:8]]
            for url in brokers or [self.broker.url]:
                command += ["--broker", url]
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS, os.path.join(ROOT, "Examples", "python_worker")]),
                           SPOOL_TEST_SCRATCH=self.scratch, PYTHONUNBUFFERED="1", **(env or {}))
        log = open(os.path.join(self.scratch, "worker-%d.log" % len(self.processes)), "wb")
        process = subprocess.Popen(command + list(arguments), cwd=cwd or self.scratch, env=environment, stdout=log, stderr=subprocess.STDOUT)
        process.log_path = log.name  # type: ignore[attr-defined]
        self.processes.append(process)
        return process

    def output(self, process: subprocess.Popen) -> str:
        with open(process.log_path) as log:  # type: ignore[attr-defined]
            return log.read()

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                try:
                    os.kill(process.pid, signal.SIGCONT)
                except OSError:
                    pass
                process.kill()
            process.wait()


@pytest.fixture()
def workers(broker: Broker, tmp_path: Any) -> Iterator[Workers]:
    found = Workers(broker, str(tmp_path))
    try:
        yield found
    finally:
        found.stop_all()


@pytest.fixture()
def model() -> str:
    """A model no other test serves."""
    return "pytest/%s" % uuid.uuid4().hex[:12]
