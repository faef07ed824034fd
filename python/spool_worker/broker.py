"""The worker protocol's HTTP calls (docs/worker-protocol.md), over kept-alive connections, with
failover across broker replicas."""
from __future__ import annotations

import http.client
import json
import os
import ssl
import threading
import urllib.parse
from typing import Any, BinaryIO, Dict, List, Optional, Tuple


class BrokerUnavailable(Exception):
    """No broker answered (refused, reset, timed out, or a 5xx from each): retry later."""


class LeaseLost(Exception):
    """409 (or 404): the job's lease moved on. Stop working on it and report nothing."""


class BrokerRefused(Exception):
    """A 4xx other than 409: this request will be refused however often it is sent."""

    def __init__(self, status: int, body: Dict[str, Any]) -> None:
        super().__init__("%d %s" % (status, body.get("message") or body))
        self.status = status
        self.body = body


class BrokerClient:
    """Calls the brokers in `urls` in turn: a connection error or a 5xx moves on to the next one.
    Kept-alive connections are pooled; a connection serves one thread at a time (http.client is
    not thread-safe)."""

    def __init__(self, urls: List[str], api_key: Optional[str] = None, ca_file: Optional[str] = None) -> None:
        if not urls:
            raise ValueError("at least one broker URL is needed")
        self.urls = [url.rstrip("/") for url in urls]
        self.api_key = api_key
        self._ssl = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
        self._current = 0
        self._pool_lock = threading.Lock()
        self._idle: Dict[str, List[http.client.HTTPConnection]] = {}
        # Whether the last call reached a broker: what /health reports.
        self.reachable = True

    def _checkout(self, base: str, timeout: float) -> http.client.HTTPConnection:
        """An idle kept-alive connection to `base`, or a new one. Pooled across threads, since each
        job runs on a thread of its own: a connection per thread would be a new one per job."""
        with self._pool_lock:
            idle = self._idle.setdefault(base, [])
            connection = idle.pop() if idle else None
        if connection is None:
            parts = urllib.parse.urlsplit(base)
            if parts.scheme == "https":
                connection = http.client.HTTPSConnection(parts.netloc, timeout=timeout, context=self._ssl, blocksize=1 << 20)
            elif parts.scheme == "http":
                connection = http.client.HTTPConnection(parts.netloc, timeout=timeout, blocksize=1 << 20)
            else:
                raise ValueError("a broker URL starts with http:// or https://, got %r" % base)
        connection.timeout = timeout
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        return connection

    def _checkin(self, base: str, connection: http.client.HTTPConnection) -> None:
        with self._pool_lock:
            idle = self._idle.setdefault(base, [])
            if len(idle) < 16:
                idle.append(connection)
                return
        connection.close()

    def call(self, method: str, path: str, body: Optional[Dict[str, Any]] = None, timeout: float = 30,
             upload: Optional[Tuple[str, str]] = None) -> Tuple[int, Dict[str, Any]]:
        """Sends one request; answers (status, JSON body) for 2xx and 4xx. `upload` is a
        (file path, content type) streamed as the body. Raises BrokerUnavailable when every broker
        failed."""
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = "Bearer " + self.api_key
        data: Optional[bytes] = None
        if body is not None:
            data = json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        last_error: Optional[BaseException] = None
        # Each broker once, and the first twice: a kept-alive connection the broker closed while it
        # sat idle fails at once and is worth one fresh try before moving on.
        for turn in range(len(self.urls) + 1):
            base = self.urls[self._current % len(self.urls)]
            connection: Optional[http.client.HTTPConnection] = None
            try:
                connection = self._checkout(base, timeout)
                if upload is not None:
                    file_path, content_type = upload
                    with open(file_path, "rb") as file:
                        size = os.fstat(file.fileno()).st_size
                        connection.request(method, path, body=file, headers=dict(
                            headers, **{"Content-Type": content_type, "Content-Length": str(size)}))
                        response = connection.getresponse()
                else:
                    connection.request(method, path, body=data, headers=headers)
                    response = connection.getresponse()
                raw = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                else:
                    self._checkin(base, connection)
                connection = None
                if response.status >= 500:
                    last_error = BrokerUnavailable("%s answered %d: %s" % (base, response.status, raw[:200].decode(errors="replace")))
                else:
                    self.reachable = True
                    try:
                        answer = json.loads(raw) if raw else {}
                    except ValueError:
                        answer = {"message": raw[:200].decode(errors="replace")}
                    return response.status, answer if isinstance(answer, dict) else {"value": answer}
            except (OSError, http.client.HTTPException) as error:
                last_error = error
            if connection is not None:
                connection.close()
            if turn > 0 or last_error is None or isinstance(last_error, BrokerUnavailable):
                self._current += 1
        self.reachable = False
        raise BrokerUnavailable(str(last_error))

    # The protocol's calls.

    def lease(self, worker_id: str, models: List[str], max_jobs: int, wait_seconds: float, lease_seconds: float,
              host: str) -> List[Dict[str, Any]]:
        status, answer = self.call("POST", "/v1/worker/lease", {
            "worker_id": worker_id, "models": models, "max_jobs": max_jobs, "wait_seconds": wait_seconds,
            "lease_seconds": lease_seconds, "host": host}, timeout=wait_seconds + 15)
        if status != 200:
            raise BrokerRefused(status, answer)
        return list(answer.get("jobs") or [])

    def write(self, request_id: str, action: str, lease_token: str, body: Dict[str, Any], timeout: float = 30) -> Dict[str, Any]:
        """A fenced write (heartbeat, complete, fail, release). Raises LeaseLost on 409 or 404."""
        payload = {key: value for key, value in body.items() if value is not None}
        payload["lease_token"] = lease_token
        status, answer = self.call("POST", "/v1/worker/jobs/%s/%s" % (request_id, action), payload, timeout=timeout)
        if status in (404, 409):
            raise LeaseLost(answer.get("message") or "lease lost")
        if status >= 400:
            raise BrokerRefused(status, answer)
        return answer

    def upload(self, request_id: str, lease_token: str, file_path: str, name: str, content_type: str) -> Dict[str, Any]:
        """Streams a file output to the broker; answers its file object."""
        query = urllib.parse.urlencode({"lease_token": lease_token, "name": name})
        status, answer = self.call("POST", "/v1/worker/jobs/%s/files?%s" % (request_id, query),
                                   upload=(file_path, content_type), timeout=3600)
        if status in (404, 409):
            raise LeaseLost(answer.get("message") or "lease lost")
        if status == 429:
            raise BrokerUnavailable("too many uploads in progress: %s" % answer.get("message"))
        if status >= 400:
            raise BrokerRefused(status, answer)
        return answer
