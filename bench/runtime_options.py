"""runtime.yaml's building blocks besides the runtime itself: the placeholders its templates may use,
its `kserve:` and `compose:` blocks (how it runs on KServe and under docker compose) and its
`profile_rules:` (how its frames count in a server profile)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from bench.protocols import CODECS

PLACEHOLDER = re.compile(r"\{([A-Za-z_0-9]+)\}")
KNOWN_PLACEHOLDERS = {
    "python",  # the runtime environment's interpreter
    "bin",  # the runtime environment's bin/ folder
    "host",  # address to bind (127.0.0.1 locally)
    "port",  # the HTTP port the harness probes
    "model_dir",  # local copy of the MLflow model version
    "model_name",  # the reference model's name
    "runtime_dir",  # the runtime folder (server code lives here)
    "shared_dir",  # code the runtime folders share (runtimes/common; beside the runtime's own code in an image)
    "work_dir",  # a fresh scratch folder per deployment
}
FREE_PORT = re.compile(r"free_port_[1-9]")


DNS_LABEL = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"


def known_protocol(value: str) -> str:
    if value not in CODECS:
        raise ValueError(f"unknown protocol '{value}'; known: {', '.join(sorted(CODECS))}")
    return value


class OtherProtocol(BaseModel):
    """A protocol the runtime serves beside its main one, on a port of its own (MLServer's gRPC)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    port: str = Field(description="the port template it listens on: a {free_port_N} the env also passes, or a number")


def _known_protocols(value: dict[str, OtherProtocol]) -> dict[str, OtherProtocol]:
    for name in value:
        known_protocol(name)
    return value


OtherProtocols = Annotated[dict[str, OtherProtocol], AfterValidator(_known_protocols)]


class KServeStock(BaseModel):
    """A stock KServe ClusterServingRuntime that serves this runtime's models too (as the variant <name>-kserve,
    KServe choosing command, ports and env). In its paths {model_name} is the InferenceService's name."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    cluster_runtime: str = Field(pattern=DNS_LABEL, description="the ClusterServingRuntime's name")
    model_format: str = Field(min_length=1, description="the InferenceService's modelFormat.name")
    protocol_version: Literal["v1", "v2", "grpc-v1", "grpc-v2"]
    protocol: str = Field(description="our codec for what it serves")
    model_class: str = Field(default="", description="what KServe fills into {{.Labels.modelClass}}")
    port: int = Field(default=8080, ge=1, le=65535, description="the HTTP port the ClusterServingRuntime sets")
    predict_path: str = Field(pattern=r"^/")
    readiness_path: str = Field(pattern=r"^/")
    not_supported: dict[str, str] = Field(default_factory=dict, description=(
        "models the stock server cannot load, by name or framework, and why (skipped, as runtime.yaml's own)"))
    own_image: bool = Field(default=True, description=(
        "run it in this runtime's image (false: the ClusterServingRuntime's image, when ours lacks its server)"))
    env: dict[str, str] = Field(default_factory=dict, description="extra environment for the stock server")

    _protocol = field_validator("protocol")(known_protocol)

    @field_validator("predict_path", "readiness_path")
    @classmethod
    def _only_model_name(cls, value: str) -> str:
        odd = [name for name in PLACEHOLDER.findall(value) if name != "model_name"]
        if odd:
            raise ValueError(f"unknown placeholder '{{{odd[0]}}}'; a stock runtime's paths know only {{model_name}}")
        return value


class KServeOptions(BaseModel):
    """runtime.yaml's `kserve:` block: how the runtime runs on KServe beyond its custom predictor container."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    stock: KServeStock | None = None


class ComposePort(BaseModel):
    """A fixed host port for one {free_port_N}: compose has no free-port allocator, and users read the names."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z][a-z0-9]*$", description="SERVEBENCH_<RUNTIME>_<NAME>_PORT moves it")
    port: int = Field(ge=1, le=65535)


class ComposeOptions(BaseModel):
    """runtime.yaml's `compose:` block: the service's default host ports (left out, free ones are assigned)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    port: int | None = Field(default=None, ge=1, le=65535, description="the HTTP port on 127.0.0.1")
    extra_ports: list[ComposePort] = Field(default_factory=list, max_length=9, description="{free_port_N} in order")


class PlatformOptions(BaseModel):
    """runtime.yaml's `platform:` block: the runtime's own Kubernetes object (a SeldonDeployment, a KubeRay
    RayService), rendered from a template in its folder beside the InferenceServices by the KServe target."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    api_version: str = Field(pattern=r"^[a-z0-9.-]+/v[0-9a-z]+$", description="e.g. ray.io/v1")
    kind: str = Field(pattern=r"^[A-Z][A-Za-z]+$")
    template: str = Field(min_length=1, description="a YAML file in the runtime folder")
    pod_specs: list[str] = Field(default_factory=list, description=(
        "dotted paths to the pod specs inside it (spec.x.0.spec), validated against Kubernetes' PodSpec"))


ProfileCategory = Literal["model", "serialisation", "http", "framework", "other"]
PROFILE_CATEGORIES: tuple[ProfileCategory, ...] = ("model", "serialisation", "http", "framework", "other")


class FrameRule(BaseModel):
    """Which profile category a sampled frame belongs to (bench/server_time/frame_rules.yaml, and runtime.yaml's
    `profile_rules:`, which are tried first). A frame matches when its module is one of `modules` (a dotted
    prefix: numpy matches numpy.core.multiarray) and its function one of `functions` (glob patterns on
    py-spy's Class.method names); a rule gives one or both lists."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    category: ProfileCategory
    modules: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _something_to_match(self) -> FrameRule:
        if not self.modules and not self.functions:
            raise ValueError("a rule needs modules, functions or both")
        return self


MetricUnit = Literal["s", "ms", "us"]


class MetricsSpec(BaseModel):
    """Where a runtime publishes Prometheus metrics and which series is its own request duration
    (runtime.yaml's `metrics:`), so a cell can show the server's clock beside the client's. `duration` is a
    histogram or summary family (its _sum and _count are read), or a counter of total time with `count`
    naming the counter of requests; `labels` keeps only matching series (the infer path, not readiness).
    `queue` names the time the same requests waited inside the server before being worked on, in the same
    form and unit, when the runtime publishes it (TorchServe's job queue)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    port: str = Field(default="{port}", description="the port template it is served on ({port}, a {free_port_N})")
    path: str = "/metrics"
    duration: str = Field(default="", description=(
        "the request-duration family, e.g. rest_server_request_duration_seconds; empty: the first on the page"))
    unit: MetricUnit = "s"
    count: str | None = Field(default=None, description="a counter of requests, when duration counts total time")
    labels: dict[str, str] = Field(default_factory=dict, description="only series with these label values")
    queue: str | None = Field(default=None, description=(
        "time queued inside the server: a histogram or summary family, or with `count` a counter of total time"))


InputKindName = Literal["tensor", "dataframe"]
ANY_FLAVOUR = "any"  # an endpoint the user points at serves whatever it serves


def _every_input_kind() -> list[InputKindName]:
    return ["tensor", "dataframe"]


class Serves(BaseModel):
    """What a runtime can serve (runtime.yaml's `serves:`): the MLflow flavours it loads and the kinds of input
    it decodes. `python_function` means anything MLflow's pyfunc loads. A team's model outside them is listed
    as unsupported with the reason, and the other runtimes go on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flavours: list[str] = Field(default_factory=lambda: ["python_function"], min_length=1)
    inputs: list[InputKindName] = Field(default_factory=lambda: _every_input_kind(), min_length=1)

    def unsupported_reason(self, runtime: str, flavours: tuple[str, ...], input_kind: str) -> str | None:
        if ANY_FLAVOUR not in self.flavours and not set(flavours) & set(self.flavours):
            return (f"{runtime} serves {' or '.join(self.flavours)} models; this one has "
                    f"{', '.join(flavours) or 'no flavour'}")
        if input_kind not in self.inputs:
            return f"{runtime} takes {' or '.join(self.inputs)} input, this model takes a {input_kind}"
        return None
