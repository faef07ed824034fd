"""A webhook receiver for the webhook tests: verifies every delivery with the `standardwebhooks`
package and records it.

Usage: webhook_receiver.py <log file> [fail first N attempts]. Prints "listening on <port>".
Each request appends one JSON line to the log: path, webhook-id, attempt number for that id, the
answer it got, whether the signature verified, the headers and the body. /fail answers 500 for
the first N attempts of each webhook-id, then 200; /gone answers 410; /slow answers 200 with a
1000-byte body it trickles a byte every half second (a receiver that never quite answers);
anything else 200.
"""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

log_path = sys.argv[1]
fail_first = int(sys.argv[2]) if len(sys.argv) > 2 else 0
verifier = Webhook(os.environ["SPOOL_WEBHOOK_SECRET"])
attempts = {}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            verifier.verify(body, headers)
            verified = True
        except Exception as error:  # noqa: BLE001 - any failure to verify is recorded as such
            verified = "no: %s" % error
        webhook_id = headers.get("webhook-id")
        with lock:
            attempts[webhook_id] = attempts.get(webhook_id, 0) + 1
            attempt = attempts[webhook_id]
        if self.path.startswith("/slow"):
            with lock, open(log_path, "a") as log:
                log.write(json.dumps({"path": self.path, "webhook_id": webhook_id, "attempt": attempt, "answer": "trickle",
                                      "verified": verified, "headers": headers, "body": body}) + "\n")
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            try:
                for _ in range(1000):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.5)
            except OSError:
                pass  # the sender gave up on this attempt
            return
        if self.path.startswith("/gone"):
            status = 410
        elif self.path.startswith("/fail") and attempt <= fail_first:
            status = 500
        else:
            status = 200
        with lock, open(log_path, "a") as log:
            log.write(json.dumps({"path": self.path, "webhook_id": webhook_id, "attempt": attempt, "answer": status,
                                  "verified": verified, "headers": headers, "body": body}) + "\n")
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("SPOOL_RECEIVER_PORT", "0"))), Handler)
print("listening on %d" % server.server_address[1], flush=True)
server.serve_forever()
