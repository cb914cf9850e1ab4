"""The channel between a Locust master and its workers: what a local multi-process generator listens on."""

from __future__ import annotations

from dataclasses import replace

from bench.load.driver import locust_command
from bench.load.plan import LoadPlan

PLAN = LoadPlan(base_url="http://127.0.0.1:8080", predict_path="/predict", protocol="kserve-v1", model_name="m",
                bodies_file="bodies", batch_size=1, loop="open", arrival="poisson", stages=[(5.0, 100.0)],
                users_per_process=8, processes=2, start_at=0.0, total_s=5.0, request_timeout_s=2.0,
                samples_dir="samples", master_port=40123)


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_a_local_master_binds_loopback_on_the_port_it_was_given_and_its_workers_join_there() -> None:
    command = locust_command(PLAN)
    assert _option(command, "--processes") == "2"
    assert _option(command, "--master-bind-host") == "127.0.0.1"  # Locust's own default is every interface
    assert _option(command, "--master-bind-port") == _option(command, "--master-port") == "40123"
    assert _option(command, "--master-host") == "127.0.0.1"


def test_one_process_starts_no_master() -> None:
    command = locust_command(replace(PLAN, processes=1))
    assert not {"--processes", "--master-bind-host", "--master"} & set(command)
