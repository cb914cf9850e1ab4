"""How late the load generator wakes for a scheduled send: gevent's sleep against the early wake-up and last stretch
(bench.load.wake_timer), over the same Poisson arrival times, interleaved, at each rate.

    .venv/bin/python scripts/wake_timing.py [--rates 50,200,800,2000,5000] [--seconds 3] [--rounds 2]

Prints each timer's lateness p50/p90/p99 (ms) and its process CPU as a share of the wall time. This is the
waiting alone: a real cell adds the time to hand the slot to a user and send (see `bench calibrate`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import gevent
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.load.wake_timer import SleepTimer, WakeTimer, early_wake


def lateness(timer: WakeTimer, rate: float, seconds: float, seed: int) -> tuple[np.ndarray, float]:
    """Lateness in ms of each wake-up over a Poisson draw, and the CPU share spent."""
    rng = np.random.default_rng(seed)
    start = time.time() + 0.1
    moments = start + np.cumsum(rng.exponential(1 / rate, max(200, int(rate * seconds))))
    late: list[float] = []

    def wait_all() -> None:
        for moment in moments:
            timer.wait_until(float(moment))
            late.append(time.time() - float(moment))

    cpu = time.process_time()
    gevent.spawn(wait_all).join()
    cpu = time.process_time() - cpu
    return np.array(late) * 1000, cpu / (float(moments[-1]) - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="50,200,800,2000,5000")
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for rate in (float(rate) for rate in args.rates.split(",")):
        for round_ in range(args.rounds):
            for name, make in (("gevent sleep", SleepTimer), ("early wake", early_wake)):
                timer = make()
                late, cpu = lateness(timer, rate, args.seconds, seed=round_)
                timer.close()
                p50, p90, p99 = np.percentile(late, [50, 90, 99])
                print(f"{rate:6g} req/s round {round_} {name:13}: lateness p50 {p50:.3f} p90 {p90:.3f} "
                      f"p99 {p99:.3f} ms; CPU {cpu:.1%}", flush=True)


if __name__ == "__main__":
    main()
