"""Where things live inside a runtime's image (its venv, serving code, model mount, port, user), read from
the runtime's Dockerfile rather than restated by each target, so runtime.yaml's placeholders mean the same
in a Docker container and in a KServe pod.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from bench.config import RuntimeSpec
from bench.errors import BenchError

CONTAINER_WORK_DIR = "/work"  # the scratch folder every runtime Dockerfile creates, writable by its user


@dataclass(frozen=True)
class ImageLayout:
    """Where things live inside a runtime's image, read from its Dockerfile rather than restated per target,
    so runtime.yaml's {bin}, {runtime_dir}, {model_dir} mean the same in Docker and behind KServe."""

    bin_dir: str  # the venv's bin/, first on the image's PATH
    runtime_dir: str  # WORKDIR: the serving code
    model_dir: str  # ENV MODEL_DIR: where the model is mounted (KServe's storage initializer uses /mnt/models)
    port: int  # first EXPOSE: the port a pod serves on
    uid: int | None  # `useradd --uid N`: Kubernetes needs a numeric user to enforce runAsNonRoot
    work_dir: str = CONTAINER_WORK_DIR
    home: str | None = None  # `useradd --create-home ... NAME`: /home/NAME, where libraries keep caches

    @property
    def writable(self) -> tuple[str, ...]:
        """The folders a server may write to, over an otherwise read-only root (scratch space, in memory):
        /tmp, the user's home (Ray keeps its session links there) and the image's work folder."""
        return ("/tmp", *([self.home] if self.home else []), self.work_dir)

    def values(self, host: str, port: int) -> dict[str, str]:
        """runtime.yaml placeholders for a container of this image (free ports are left to render())."""
        return {"python": f"{self.bin_dir}/python", "bin": self.bin_dir, "host": host, "port": str(port),
                "model_dir": self.model_dir, "runtime_dir": self.runtime_dir, "shared_dir": self.runtime_dir,
                "work_dir": self.work_dir}


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in dockerfile.read_text().splitlines()
                                         if not line.lstrip().startswith("#")))
    pairs = []
    for line in joined.splitlines():
        parts = line.strip().split(None, 1)
        if parts:
            pairs.append((parts[0].upper(), parts[1] if len(parts) > 1 else ""))
    return pairs


def image_layout(spec: RuntimeSpec) -> ImageLayout:
    """Read the image's layout from the runtime's Dockerfile (BenchError naming what is missing)."""
    dockerfile = spec.folder / "Dockerfile"
    if not dockerfile.is_file():
        raise BenchError(f"{spec.folder}: missing Dockerfile", hint="a runtime folder needs a Dockerfile")
    env: dict[str, str] = {}
    workdir = ""
    ports: list[int] = []
    uid: int | None = None
    home: str | None = None
    for instruction, arguments in _instructions(dockerfile):
        if instruction == "ENV":
            for token in shlex.split(arguments):
                key, _, value = token.partition("=")
                if value or token.endswith("="):
                    env[key] = value
        elif instruction == "WORKDIR":
            workdir = arguments.strip()
        elif instruction == "EXPOSE":
            ports += [int(port.split("/")[0]) for port in arguments.split()]
        elif instruction == "RUN" and (found := re.search(r"useradd ([^&;|]*)", arguments)):
            words = found.group(1).split()
            if (number := re.search(r"--uid[= ](\d+)", found.group(1))) is not None:
                uid = int(number.group(1))
            if {"--create-home", "-m"} & set(words):
                home = f"/home/{words[-1]}"
    bin_dir = next((entry for entry in env.get("PATH", "").split(":") if entry.endswith("/bin")), "")
    missing = [what for what, value in (("ENV PATH=<venv>/bin:$PATH", bin_dir), ("WORKDIR", workdir),
                                        ("EXPOSE", ports)) if not value]
    if missing:
        raise BenchError(f"{dockerfile}: cannot tell the image's layout: no {', '.join(missing)}",
                         hint="see runtimes/fastapi/Dockerfile for the expected form")
    return ImageLayout(bin_dir, workdir, env.get("MODEL_DIR", "/mnt/models"), ports[0], uid, home=home)
