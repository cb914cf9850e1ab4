"""A container's process tree, and a profiler placed to see it as it sees itself.

py-spy run on the host against a container's processes cannot tell their waiting threads from their running
ones (py-spy issue #490): Python records each thread's id in the container's pid namespace, py-spy looks for
it among the host's ids, finds nothing and counts every thread as running unless its stack looks idle. So the
profiler runs in a short-lived container of its own that joins the server container's pid namespace (`--pid
container:NAME`): there the ids match. That container is made from the server's own image (already present;
nothing is built and no image changes), runs the host's py-spy (a static binary, bind-mounted read-only) as
root with the one capability reading another process needs (SYS_PTRACE; every other is dropped, its root is
read-only: bench.targets.confinement), pinned to the generator's CPUs (never the server's), and writes into
the host's profile folder (bind-mounted). The server's container itself is unchanged. `docker run` stays
attached, so a SIGINT to it reaches py-spy (--sig-proxy), which then writes what it sampled; when the server's
container goes, so does everything in its pid namespace.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from bench.process_tree import ProcessTree, SamplerPlace
from bench.provision.containers import docker
from bench.targets.confinement import profiler_flags

TOOL = "/servebench/profiler"  # the profiler's executable inside the sampling container
FOLDER = "/servebench/profiles"  # the host's output folder inside it


def namespace_pid(host_pid: int) -> int:
    """A process's pid in its innermost pid namespace (the last NSpid field: 1 for a container's main process),
    or the host pid where the kernel does not say."""
    try:
        for line in Path(f"/proc/{host_pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except (OSError, ValueError):
        pass
    return host_pid


class ContainerTree(ProcessTree):
    """The processes of one container as the host sees them (CPU, memory), sampled from inside its pid namespace."""

    def __init__(self, root_pid: int, container: str, image: str, labels: dict[str, str]) -> None:
        super().__init__(root_pid)
        self.container = container
        self.image = image
        self.labels = labels
        self.samplers: list[str] = []  # the sampling containers started, removed with the server's

    def sampler_place(self, executable: Path, folder: Path, cpus: tuple[int, ...]) -> SamplerPlace:
        name = f"{self.container}-profiler-{secrets.token_hex(2)}"
        self.samplers.append(name)
        labels = [part for key, value in self.labels.items() for part in ("--label", f"{key}={value}")]
        command = ("docker", "run", "--rm", "--name", name, *labels, "--pid", f"container:{self.container}",
                  "--network", "none", "--no-healthcheck", "--user", "0", *profiler_flags(),
                  "--cpuset-cpus", ",".join(map(str, cpus)),
                  "-v", f"{executable.resolve()}:{TOOL}:ro", "-v", f"{folder.resolve()}:{FOLDER}",
                  "--entrypoint", TOOL, self.image)
        return SamplerPlace(command, FOLDER, namespace_pid(self.root_pid))

    def remove_samplers(self) -> None:
        """Remove any sampling container still there (one whose docker run was killed outright)."""
        for name in self.samplers:
            docker("rm", "-f", name, check=False, timeout=60)
        self.samplers.clear()
