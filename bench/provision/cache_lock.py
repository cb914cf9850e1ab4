"""One lock per cache key (an environment, a wheelhouse, an image tag), so that two harness processes never
build the same thing at once: on a cold cache, `scripts/side_by_side.sh` started two builds of one
environment and one deleted the other's venv. The second process waits, then reuses what the first built.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def cache_lock(path: Path) -> Iterator[None]:
    """Hold `<path>.lock` exclusively (flock: released by the kernel if the holder dies, even by SIGKILL)."""
    lock_file = path.with_name(path.name + ".lock")
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
