"""The load plan: everything the locustfile needs, passed as one JSON file (no harness objects cross)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

from bench.load.schedule import Arrival, ArrivalProcess, RateStage

Loop = Literal["open", "closed"]
HEADERS_ENV = "SERVEBENCH_REQUEST_HEADERS"  # JSON list of [name, value] pairs
PLAN_ENV = "SERVEBENCH_LOAD_PLAN"  # the plan file of a local generator process (or of a master)


@dataclass(frozen=True)
class RemoteWorkers:
    """bench run --expect-workers N: the generator is N `bench worker` processes that join a master here.

    Built whole by bench.cli.remote_options, whose flags hold the defaults (no second copy here)."""

    count: int
    bind: str
    port: int
    wait_s: float
    in_cluster: bool  # --cluster-workers: the KServe target starts them as pods of its cluster
    token: str = field(repr=False)  # the run's: workers prove they hold it (bench.load.worker_auth)
    share_headers: bool  # --share-headers: the request headers (an API key) travel to the workers


@dataclass(frozen=True)
class LoadPlan:
    base_url: str
    predict_path: str
    protocol: str
    model_name: str
    bodies_file: str  # the request bodies, encoded once by the harness (bench.load.bodies)
    batch_size: int
    loop: Loop
    arrival: Arrival
    stages: list[tuple[float, float]]  # (duration_s, rate) for open loop; one stage for closed loop
    users_per_process: int
    processes: int
    start_at: float  # wall-clock time of scheduled time zero (warm-up starts here)
    total_s: float  # warm-up plus measured duration
    request_timeout_s: float
    samples_dir: str
    seed: int = 0
    warmup_s: float = 0.0  # the window's arrivals are drawn on their own from here (bench.load.schedule)
    arrival_cv: float = 1.0  # gamma arrivals: the gaps' coefficient of variation
    trace_file: str | None = None  # trace arrivals: the recorded file (bench.load.trace), read by each process
    verify_tls: bool = True  # https: verify the server's certificate (off: --insecure)
    ca_cert: str | None = None  # https: the CA bundle to verify it against
    # Remote workers (bench run --expect-workers N): this plan's process is their master, `processes` of them
    # join it (bench worker) and get the plan over Locust's messages; start_at is then set when they are ready.
    remote_workers: bool = False
    master_bind: str = "127.0.0.1"
    master_port: int = 5557
    worker_wait_s: float = 60.0  # for every expected worker to join, at most
    # Extra request headers are not part of the plan: plan.json is written to disk, and headers may hold an
    # API key. The driver passes them in the generator's environment (HEADERS_ENV) instead.

    def arrival_process(self) -> ArrivalProcess:
        return ArrivalProcess(self.arrival, self.arrival_cv, self.trace_file)

    def rate_stages(self) -> list[RateStage]:
        return [RateStage(duration, rate) for duration, rate in self.stages]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> LoadPlan:
        data = json.loads(text)
        data["stages"] = [tuple(stage) for stage in data["stages"]]
        return cls(**data)
