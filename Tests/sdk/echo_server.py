"""A stand-in inference server for `spool-worker --forward`: POST a JSON payload, get JSON back.

Prints "listening on <port>" once it accepts connections. payload.status makes it answer with that
HTTP status; otherwise it answers 200 with {"generated": <prompt reversed>, "received": <payload>}.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        payload = json.loads(self.rfile.read(length) or b"{}")
        status = int(payload.get("status", 200))
        body = {"generated": str(payload.get("prompt", ""))[::-1], "received": payload, "path": self.path,
                "request_id": self.headers.get("X-Spool-Request-Id")}
        if status != 200:
            body = {"error": "asked for %d" % status}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print("listening on %d" % server.server_address[1], flush=True)
server.serve_forever()
