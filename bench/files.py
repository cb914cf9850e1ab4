"""Files the harness writes and reads back: durable when written, confined to their folder when read.

A results file or baseline is written to a unique temporary file beside it, fsynced, renamed over the old
one, and the folder fsynced: a crash or power loss leaves the old file or the new one, never half of
either. Paths read back from a results file (a cell's samples, a flame graph) must stay inside the run
folder: a crafted results.json must not make the report read, or inline, any other file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.errors import BenchError


def write_durably(path: Path, data: str | bytes) -> None:
    """Replace path with data: a unique temporary file, fsynced, renamed, then the folder fsynced."""
    raw = data.encode() if isinstance(data, str) else data
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide a report's files from the team
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    sync_folder(path.parent)


def sync_file(path: Path) -> None:
    """Flush a file another writer closed (Parquet) to the disk before it is renamed into place."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_folder(folder: Path) -> None:
    """Make a rename in folder durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def inside(folder: Path, relative: str, what: str) -> Path:
    """folder/relative, refused (one line) when it leads outside folder: an absolute path, '..', a symlink."""
    root = folder.resolve()
    path = (folder / relative).resolve()
    if not path.is_relative_to(root):
        raise BenchError(f"{what} '{relative}' in {folder} points outside the run folder",
                         hint="the results file was edited or crafted: use the run folder as the harness wrote it")
    return path


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current
