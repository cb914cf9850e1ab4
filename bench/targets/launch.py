"""How a runtime is launched, whatever the target: CPU placement, ports and the rendered command.

runtime.yaml's command, env and paths are templates; each target supplies the values ({python}, {port},
{model_dir}...) for where the server runs (a virtualenv here, an image in a container), so the contract
is the same locally, in Docker and behind KServe.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from bench.config import RuntimeSpec
from bench.errors import BenchError
from bench.knobs import knob_env, knob_placeholders
from bench.ports import LOOPBACK, free_port
from bench.processes import GeneratorPriority, parse_cpu_list
from bench.protocols import codec_for
from bench.runtime_options import FREE_PORT, PLACEHOLDER
from bench.targets.base import Endpoint

HOST = LOOPBACK


@dataclass(frozen=True)
class CpuPlan:
    """Which CPUs the server and the load generator get (recorded with every result), and the scheduling class
    the generator asks for on CPUs of its own (each cell records the class it got)."""

    server: tuple[int, ...]
    generator: tuple[int, ...]
    generator_priority: GeneratorPriority = "real-time"

    def as_dict(self) -> dict[str, list[int]]:
        return {"server_cpus": list(self.server), "generator_cpus": list(self.generator)}


def default_cpu_plan() -> CpuPlan:
    """The last available CPU for the server, the rest for the generator (both share one CPU on 1-core boxes)."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) == 1:
        return CpuPlan(tuple(available), tuple(available))
    return CpuPlan((available[-1],), tuple(available[:-1]))


def cpu_plan(server: str | None, generator: str | None, generator_priority: GeneratorPriority = "real-time") -> CpuPlan:
    """The default split with either side replaced by a user's CPU list ('1', '0,2', '2-3'); a CPU this
    process may not run on is a usage error here, before anything is started on it."""
    cpus = default_cpu_plan()
    try:
        cpus = CpuPlan(parse_cpu_list(server) if server else cpus.server,
                       parse_cpu_list(generator) if generator else cpus.generator, generator_priority)
    except ValueError:
        raise BenchError("bad CPU list", hint="use forms like 1 or 0,2 or 2-3") from None
    usable = os.sched_getaffinity(0)
    if not set(cpus.server + cpus.generator) <= usable:
        raise BenchError(f"CPUs {sorted(set(cpus.server + cpus.generator) - usable)} are not available",
                         hint=f"usable CPUs: {sorted(usable)}")
    return cpus


def render(template: str, values: dict[str, str]) -> str:
    """Fill {placeholders}; free_port_N are allocated on first use."""

    def fill(match: Any) -> str:
        key = match.group(1)
        if key not in values and FREE_PORT.fullmatch(key):
            taken = set(values.values())
            port = str(free_port())
            while port in taken:  # the OS may hand back a port we just released
                port = str(free_port())
            values[key] = port
        return values[key]

    return PLACEHOLDER.sub(fill, template)



@dataclass(frozen=True)
class Launch:
    command: list[str]
    env: dict[str, str]
    endpoint: Endpoint


def render_launch(runtime: RuntimeSpec, model_name: str, values: dict[str, str]) -> Launch:
    """Fill runtime.yaml's templates; values must hold every placeholder but the free ports."""
    filled = {"model_name": model_name, **knob_placeholders(runtime.config), **values}
    command = [render(part, filled) for part in runtime.command]
    env = {key: render(value, filled) for key, value in runtime.env.items()}
    env.update(knob_env(runtime.knobs, runtime.config))  # a knob's variable wins over runtime.yaml's env
    http = f"http://{filled['host']}:{filled['port']}"
    readiness = render(runtime.readiness_path, filled)
    if runtime.served_on is None:
        endpoint = Endpoint(http, render(runtime.predict_path, filled), readiness, runtime.protocol, model_name)
    else:  # a protocol on a port of its own (gRPC): predictions go there, readiness stays on the HTTP port
        base = f"grpc://{filled['host']}:{render(runtime.served_on, filled)}"
        endpoint = Endpoint(base, codec_for(runtime.protocol).method, readiness, runtime.protocol, model_name,
                            ready_base_url=http)
    if runtime.metrics is not None:  # on a port the command or env already took, or the HTTP port
        metrics_port = render(runtime.metrics.port, filled)
        endpoint = replace(endpoint, metrics_url=f"http://{filled['host']}:{metrics_port}{runtime.metrics.path}")
    return Launch(command, env, endpoint)


def thread_env(cpus: int) -> dict[str, str]:
    """One BLAS/OpenMP thread per server CPU: more threads than CPUs only contend."""
    threads = str(cpus)
    return {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads}
