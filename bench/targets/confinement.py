"""Least privilege for the containers the harness starts: no capabilities, no privilege gained through
setuid binaries, a bounded number of processes and threads, and a read-only root with scratch space only
where a server writes (/tmp, the user's home and the image's work folder: ImageLayout.writable), in
memory, charged to the container's memory cap.

A server answers HTTP on an unprivileged port and reads a model mounted read-only: it needs none of
Docker's default capabilities. The profiler's container is the one exception, and adds one capability:
SYS_PTRACE, to read the server's memory.
"""

from __future__ import annotations

from collections.abc import Sequence

# Threads count against it too. The most seen under `bench run --target docker --runtime all`: Ray Serve 275,
# MLServer 25, TorchServe 27 (docker stats, 2026-12-07): room for larger machines and knobs, low enough
# that a runaway fork stops at the container.
PIDS_LIMIT = 2048
# per scratch folder, in containers and pods alike: tmpfs pages count against the container's --memory, an
# emptyDir's against the pod's ephemeral storage
SCRATCH_MIB = 1024


def _common() -> list[str]:
    return ["--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--pids-limit", str(PIDS_LIMIT)]


def server_flags(writable: Sequence[str], uid: int | None) -> list[str]:
    """`docker create` flags for a server container: writable only in memory-backed scratch folders. Docker
    copies a folder the image already has onto its tmpfs with that folder's mode but root as the owner, so
    the image's user is named as the owner (uid)."""
    owner = f",uid={uid}" if uid is not None else ""
    flags = [*_common(), "--read-only"]
    for folder in writable:
        flags += ["--tmpfs", f"{folder}:rw,nosuid,nodev,size={SCRATCH_MIB}m{owner}"]
    return flags


def profiler_flags() -> list[str]:
    """`docker run` flags for the profiler's container: only SYS_PTRACE, and nothing writable but its output."""
    return [*_common(), "--cap-add", "SYS_PTRACE", "--read-only"]


def described() -> str:
    """What a cell records about its container's confinement."""
    return f"cap-drop ALL, no-new-privileges, pids-limit {PIDS_LIMIT}, read-only root, tmpfs scratch"
