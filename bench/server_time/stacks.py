"""Collapsed stacks as py-spy writes them (`--format raw`): one line per distinct stack, frames from the root
to the leaf separated by semicolons, then the number of samples. With --subprocesses the root frames name
the process (`process 123:"python server.py"`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
PROCESS = re.compile(r'^process (?P<pid>\d+):"(?P<command>.*?)"(?:;|$)')


@dataclass(frozen=True)
class Frame:
    """One frame: a Python function in a file, or a process (the root of its own stacks)."""

    function: str
    file: str = ""

    @property
    def is_process(self) -> bool:
        return not self.file and self.function.startswith("process ")

    @property
    def module(self) -> str:
        """The dotted module the file is: numpy/core/fromnumeric.py -> numpy.core.fromnumeric; an absolute
        path outside site-packages (a script) -> its base name."""
        path = self.file
        if "site-packages/" in path:
            path = path.rsplit("site-packages/", 1)[1]
        elif path.startswith("/") or path.startswith("<"):
            path = path.rsplit("/", 1)[-1]
        path = path.removesuffix(".py").removesuffix("/__init__")
        return path.replace("/", ".").strip(".")

    @property
    def label(self) -> str:
        return self.function if self.is_process else f"{self.function} ({self.file})"


@dataclass(frozen=True)
class Stack:
    frames: tuple[Frame, ...]  # root first
    count: int


def parse_frame(text: str) -> Frame:
    match = FRAME.match(text)
    if match is None:
        return Frame(text)
    return Frame(match["function"], match["file"])


def parse_collapsed(text: str) -> list[Stack]:
    """Every stack in py-spy's raw output (a malformed line is skipped: a truncated last line)."""
    stacks = []
    for line in text.splitlines():
        head, _, count = line.rstrip().rpartition(" ")
        if not head or not count.isdigit():
            continue
        frames: list[Frame] = []
        while (process := PROCESS.match(head)) is not None:  # a command line may hold semicolons
            frames.append(Frame(f"process {process['pid']}: {process['command']}"))
            head = head[process.end():]
        frames.extend(parse_frame(part) for part in head.split(";") if part)
        stacks.append(Stack(tuple(frames), int(count)))
    return stacks


def read_collapsed(path: Path) -> list[Stack]:
    return parse_collapsed(path.read_text(errors="replace")) if path.exists() else []
