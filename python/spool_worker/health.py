"""`--health-port`: /health for Kubernetes probes and /metrics for Prometheus."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict


class HealthServer:
    """/health is 200 once setup() has run and the last call to a broker reached one, 503 otherwise;
    /metrics counts jobs in hand, completed and failed."""

    def __init__(self, port: int, healthy: Callable[[], "tuple[bool, str]"], counters: Callable[[], Dict[str, int]], host: str = "0.0.0.0") -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the standard library's name
                if self.path.split("?")[0] == "/health":
                    ok, reason = outer.healthy()
                    self._answer(200 if ok else 503, ("ok\n" if ok else reason + "\n").encode(), "text/plain")
                elif self.path.split("?")[0] == "/metrics":
                    counts = outer.counters()
                    text = "".join(
                        "# TYPE spool_worker_%s %s\nspool_worker_%s %d\n" % (name, "gauge" if name == "jobs_in_hand" else "counter", name, value)
                        for name, value in counts.items())
                    self._answer(200, text.encode(), "text/plain; version=0.0.4")
                else:
                    self._answer(404, b"not found\n", "text/plain")

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - probes are not worth a line each
                pass

        self.healthy = healthy
        self.counters = counters
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, name="spool-health", daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
