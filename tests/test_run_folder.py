"""A run folder is claimed atomically: a live owner keeps it, a dead one (or a reused pid) gives it up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.processes import started_at
from bench.results.store import CLAIM_FILE, RESULTS_FILE, claim_folder


def test_a_second_claim_by_a_live_owner_is_refused(tmp_path: Path) -> None:
    claim_folder(tmp_path / "run", "first")
    pid, started, run_id = (tmp_path / "run" / CLAIM_FILE).read_text().split()
    assert (int(pid), started, run_id) == (os.getpid(), started_at(os.getpid()), "first")
    with pytest.raises(BenchError, match=f"being written by another run \\(pid {os.getpid()}\\)"):
        claim_folder(tmp_path / "run", "second")


def test_the_claim_of_a_dead_owner_is_taken_over(tmp_path: Path) -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / CLAIM_FILE).write_text(f"{child.stdout.strip()} 1.00 gone\n")
    claim_folder(folder, "mine")
    assert (folder / CLAIM_FILE).read_text().split()[2] == "mine"


def test_a_reused_pid_does_not_hold_the_folder(tmp_path: Path) -> None:
    """The pid runs, but started at another time: another process reused it, and the owner is gone."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / CLAIM_FILE).write_text(f"{os.getpid()} 12.00 old\n")
    claim_folder(folder, "mine")
    assert (folder / CLAIM_FILE).read_text().split()[2] == "mine"


def test_a_claim_without_a_start_time_is_held_by_its_pid(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / CLAIM_FILE).write_text(f"{os.getpid()} older-format\n")
    with pytest.raises(BenchError, match="being written by another run"):
        claim_folder(folder, "mine")


def test_a_folder_with_results_or_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / RESULTS_FILE).write_text("{}")
    with pytest.raises(BenchError, match="already holds a run"):
        claim_folder(tmp_path / "done", "mine")
    (tmp_path / "file").write_text("")
    with pytest.raises(BenchError, match="a file, not a folder"):
        claim_folder(tmp_path / "file", "mine")
