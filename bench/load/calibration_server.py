"""Tiny HTTP/1.1 servers with known behaviour, to measure the load generator itself.

python -m bench.load.calibration_server MODE HOST PORT RECORD_FILE
  noop         answers at once (for the generator's ceiling)
  fixed:MS     answers after MS milliseconds (for percentile accuracy)
  stall:MS:S   answers at once, but freezes the whole process for MS milliseconds every S seconds, like a
               stop-the-world pause (for coordinated omission)

On SIGTERM it writes RECORD_FILE (JSON): the server-side time of every request and every stall window,
the ground truth the generator's figures are compared with. asyncio with uvloop when available: one
core answers far more requests per second than one Locust process can send.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from typing import cast

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class Recorder:
    def __init__(self) -> None:
        self.durations_ms: list[float] = []
        self.stalls: list[tuple[float, float]] = []


class CalibrationProtocol(asyncio.Protocol):
    def __init__(self, delay_s: float, recorder: Recorder) -> None:
        self.delay_s = delay_s
        self.recorder = recorder
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio subclasses

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            length = 0
            for line in self.buffer[:head_end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            self.buffer = self.buffer[end:]
            arrived = time.perf_counter()
            if self.delay_s > 0:
                asyncio.get_running_loop().call_later(self.delay_s, self._respond, arrived)
            else:
                self._respond(arrived)

    def _respond(self, arrived: float) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(RESPONSE)
            self.recorder.durations_ms.append((time.perf_counter() - arrived) * 1000.0)


async def _stall_forever(stall_s: float, every_s: float, recorder: Recorder) -> None:
    """Block the event loop (not just sleep): nothing is read or answered during a stall."""
    while True:
        await asyncio.sleep(every_s - stall_s)
        start = time.time()
        time.sleep(stall_s)
        recorder.stalls.append((start, time.time()))


async def serve(mode: str, host: str, port: int, record_file: str) -> None:
    recorder = Recorder()
    kind, *params = mode.split(":")
    delay_s = float(params[0]) / 1000.0 if kind == "fixed" else 0.0
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: CalibrationProtocol(delay_s, recorder), host, port, backlog=4096)
    staller = None
    if kind == "stall":
        staller = loop.create_task(_stall_forever(float(params[0]) / 1000.0, float(params[1]), recorder))
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    print(f"calibration server {mode} on {host}:{port}", flush=True)
    await stop
    if staller is not None:
        staller.cancel()
    server.close()
    record: dict[str, object] = {"mode": mode, "durations_ms": recorder.durations_ms, "stalls": recorder.stalls}
    with open(record_file, "w") as sink:
        json.dump(record, sink)


def main() -> None:
    mode, host, port, record_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(mode, host, port, record_file))


if __name__ == "__main__":
    main()
