"""Test double. It answers the model's golden inputs with the golden outputs (so parity passes) and any
other row with the row itself. SERVEBENCH_TEST_FAKE_MODE: ok, crash (exit at start), never_ready, fork (spawns a child
that ignores SIGTERM), die_on_predict (exits on the first request), die_after:N (exits on request N+1),
slow:MS (sleeps MS milliseconds per request), serial:MS (one request at a time, MS milliseconds each: a
single-server queue whose capacity is 1000/MS req/s), serial (the same, MS from FAKE_SERVICE_MS).
busy:MODEL_MS:FRAMEWORK_MS (spends that much CPU time per request in marked_busy_loop and in
marked_framework_loop, in shuffled 0.5 ms pieces: runtime.yaml's profile_rules count them as model and
framework, so a profile's shares are known). SERVEBENCH_TEST_FAKE_REQUIRE_HEADER="Name: value" answers 401 to a predict
request without that header (an API key)."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODE = os.environ.get("SERVEBENCH_TEST_FAKE_MODE", "ok")
REQUIRED = [part.strip() for part in os.environ.get("SERVEBENCH_TEST_FAKE_REQUIRE_HEADER", "").split(":", 1)]
SERIAL = threading.Lock()
GOLDEN = {}
golden_file = os.path.join(os.environ.get("FAKE_MODEL_DIR", "/nonexistent"), "..", "golden.npz")
if os.path.exists(golden_file):
    import numpy as np

    with np.load(golden_file) as golden:
        pairs = zip(golden["inputs"].tolist(), golden["outputs"].tolist(), strict=True)
        GOLDEN = {tuple(row): answer for row, answer in pairs}
SERVED = [0]
NEXT_FREE = [0.0]  # when the single server is next free, on the monotonic clock


def serial_delay(service_s):
    """How long this request must wait to be served one at a time, each taking service_s exactly.

    The queue is kept on a virtual clock rather than by sleeping under a lock: a lock hand-off costs a thread
    wake-up and the GIL each time, which stretched every service time and so moved the knee this double is
    meant to have (p99 searches found 0.75-0.9 of the M/D/1 prediction). Here each request's departure is
    max(arrival, previous departure) + service_s, so thread scheduling only delays the reply, never the queue.
    """
    with SERIAL:
        now = time.monotonic()
        NEXT_FREE[0] = max(now, NEXT_FREE[0]) + service_s
        return NEXT_FREE[0] - now


def marked_busy_loop(seconds):
    """Burns `seconds` of this thread's CPU time (not wall time, so a preempted thread still does it all)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def marked_framework_loop(seconds):
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


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
        if len(REQUIRED) == 2 and self.headers.get(REQUIRED[0]) != REQUIRED[1]:
            self._send(401, {"error": f"missing or wrong {REQUIRED[0]} header"})
            return
        SERVED[0] += 1
        if MODE == "die_on_predict" or (MODE.startswith("die_after:") and SERVED[0] > int(MODE.split(":")[1])):
            os.kill(os.getpid(), signal.SIGKILL)
        if MODE.startswith("slow:"):
            time.sleep(float(MODE.split(":")[1]) / 1000)
        if MODE.startswith("serial:") or MODE == "serial":
            service_ms = os.environ["FAKE_SERVICE_MS"] if MODE == "serial" else MODE.split(":")[1]
            time.sleep(serial_delay(float(service_ms) / 1000))
        if MODE.startswith("busy:"):
            model_ms, framework_ms = (float(ms) for ms in MODE.split(":")[1:3])
            # in 0.5 ms pieces, shuffled: each piece has the same call overhead and the same chance of being
            # preempted, so the loops' shares of the wall time a sampler sees are their shares of CPU time
            # (two whole loops in a fixed order gave the second 0.60 of the samples instead of 0.67)
            pieces = [marked_busy_loop] * round(model_ms / 0.5) + [marked_framework_loop] * round(framework_ms / 0.5)
            random.shuffle(pieces)
            for loop in pieces:
                loop(0.0005)
        answers = [GOLDEN.get(tuple(row), row) for row in body["instances"]]
        self._send(200, {"predictions": answers})

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


print("fake server: listening", flush=True)
ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
