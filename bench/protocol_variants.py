"""A runtime over another protocol it serves: the variant `<name>-<protocol>` that one run measures beside it.

runtime.yaml's `protocols:` names the protocols a runtime also serves and the port each listens on; the
variant speaks that protocol on that port, keeps every other setting, and is provisioned as its runtime
(same environment and image), so REST and gRPC of one server differ in the wire protocol alone.
"""

from __future__ import annotations

from bench.config import RuntimeSpec


def speaks(runtime: RuntimeSpec) -> list[str]:
    return [runtime.protocol, *runtime.protocols]


def speaking(runtime: RuntimeSpec, protocol: str) -> RuntimeSpec:
    if protocol == runtime.protocol:
        return runtime
    other = runtime.protocols[protocol]
    return runtime.model_copy(update={"name": f"{runtime.name}-{protocol}", "protocol": protocol, "protocols": {},
                                      "served_on": other.port, "provisioned_as": runtime.build_name,
                                      "description": f"{runtime.description} over {protocol}"})
