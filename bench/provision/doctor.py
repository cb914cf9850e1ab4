"""`bench doctor`: what the harness needs, whether it is here, and how to get it."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass

from bench.config import available_runtimes, load_runtime
from bench.models.catalog import SPECS
from bench.models.registry import find_local, tracking_uri
from bench.provision.containers import daemon_problem, inspect
from bench.provision.envs import load_env
from bench.provision.images import base_image_default
from bench.redact import redact_uri


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None
    required: bool = True


def run_checks() -> list[Check]:
    checks = [Check("python", sys.version_info[:2] == (3, 11), sys.version.split()[0],
                    "use Python 3.11 (the runtimes' pins and the torch wheel are for 3.11)")]
    checks.append(Check("MLflow tracking store", True, redact_uri(tracking_uri())))
    built = [name for name, spec in SPECS.items() if find_local(spec) is not None]
    checks.append(Check("reference models", len(built) == len(SPECS), f"{len(built)}/{len(SPECS)} built",
                        "bench models build (bench run also builds them)", required=False))
    for name in available_runtimes():
        env = load_env(load_runtime(name))
        checks.append(Check(f"{name} environment", env is not None, str(env.path) if env else "not built",
                            f"bench envs build --runtime {name} (bench run also builds it)", required=False))
    problem = daemon_problem()
    checks.append(Check("Docker daemon", problem is None, problem or "reachable",
                        "apt-get install docker.io; dockerd --storage-driver=vfs --iptables=false "
                        "--ip6tables=false --bridge=none &   (needed for --target docker)"))
    if problem is None:
        base = base_image_default()
        checks.append(Check("base image", inspect("image", base) is not None, base,
                            f"docker pull {base}, or scripts/base-image.sh for an offline one", required=False))
    for tool, why in (("chromium", "the report's browser test"), ("wrk", "bench calibrate's comparison")):
        path = shutil.which(tool)
        checks.append(Check(tool, path is not None, path or "not installed", f"apt-get install {tool} ({why})",
                            required=False))
    return checks
