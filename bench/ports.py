"""Ports on this host: where a server or the harness's own listeners bind."""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"  # what nothing beyond this host can reach


def free_port(host: str = LOOPBACK) -> int:
    """A port the OS reports free on host now (it may be taken again before use: callers bind at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
