"""Test double. FAKE_MODE: ok (echo), crash (exit at start), never_ready, fork (spawns a child that
ignores SIGTERM), die_on_predict (exits on the first request)."""

import json
import os
import signal
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODE = os.environ.get("FAKE_MODE", "ok")
if MODE == "crash":
    print("fake server: failing on purpose at startup", flush=True)
    sys.exit(3)
if MODE == "fork":
    child = subprocess.Popen([sys.executable, "-c",
                              "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    print(f"fake server: child {child.pid}", flush=True)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/ready" and MODE != "never_ready":
            self._send(200, {"ready": True, "pid": os.getpid(), "affinity": sorted(os.sched_getaffinity(0)),
                             "omp": os.environ.get("OMP_NUM_THREADS")})
        else:
            self._send(503, {"ready": False})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if MODE == "die_on_predict":
            os.kill(os.getpid(), signal.SIGKILL)
        self._send(200, {"predictions": body["instances"]})

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


print("fake server: listening", flush=True)
ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
