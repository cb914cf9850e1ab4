"""The url target: measure an endpoint servebench did not start (a cluster's InferenceService, a gateway).

There is nothing to provision or stop: the runtime is the endpoint, named by the user and recorded as
external, and "deploy" checks that it answers a TCP connection. Parity, load, statistics and reports are
those of every target. Request headers (an API key) reach the parity check and the load generator only
through memory and the generator's environment: never results.json, plan.json, logs or the command line.
The server's CPU and memory are not visible from here, so they are recorded as unknown, not as zero.
"""

from __future__ import annotations

import base64
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from bench.config import RuntimeSpec
from bench.errors import BenchError, DeployError
from bench.models.registry import LocalModel
from bench.protocols import CODECS
from bench.redact import redact_uri
from bench.results.schema import Provisioning
from bench.runtime_options import ANY_FLAVOUR, MetricsSpec, Serves
from bench.targets.base import Deployment, Endpoint, Provisioned, Say, Target

CONNECT_TIMEOUT_S = 5.0
HEADER = re.compile(r"^([!#$%&'*+.^_`|~0-9A-Za-z-]+):\s*(.*)$")  # an RFC 9110 field name, a colon, a value
RESERVED_HEADERS = {"host", "content-length", "content-type", "transfer-encoding", "connection"}


@dataclass(frozen=True)
class UrlOptions:
    """What `--target url` is given on the command line, checked."""

    url: str
    protocol: str
    name: str
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # may hold an API key
    verify_tls: bool = True
    ca_cert: str | None = None
    metrics_url: str | None = None  # its Prometheus page (read without the extra headers)
    metrics_series: str | None = None
    worker_base_url: str | None = None  # where remote workers reach the endpoint, when not by --url's host

    @classmethod
    def parse(cls, url: str | None, protocol: str | None, name: str | None, headers: list[str] | None,
              insecure: bool, ca_cert: str | None, metrics_url: str | None = None,
              metrics_series: str | None = None, worker_url: str | None = None) -> UrlOptions:
        """Every check a user's typing can fail, each as one line with a hint. A user:password in --url becomes
        an Authorization header: from here on the URL carries no credential, so nothing that records or passes
        it on (results, reports, plan.json, the generator's command line) can leak one."""
        if not url:
            raise BenchError("--target url needs --url", hint="for example --url http://127.0.0.1:8080/v2/models/"
                             "iris-logreg/infer --protocol v2")
        given = list(headers or ())
        url, basic = _credentials_out(url)
        if basic is not None:
            if any(_header(header)[0].lower() == "authorization" for header in given):
                raise BenchError(f"--url {url}: a user:password and an Authorization header both",
                                 hint="give the credential one way")
            given.append(f"Authorization: {basic}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BenchError(f"--url {url}: not an http:// or https:// URL with a host",
                             hint="for example http://127.0.0.1:8080/v2/models/iris-logreg/infer")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number in range
        except ValueError:
            raise BenchError(f"--url {url}: the port is not a number from 1 to 65535",
                             hint="for example http://127.0.0.1:8080/predict") from None
        if parts.query or parts.fragment:
            raise BenchError(f"--url {url}: a query or fragment is not sent", hint="give the predict path alone")
        if protocol not in CODECS:
            raise BenchError(f"--protocol {protocol}: the wire protocol the endpoint speaks" if protocol else
                             "--target url needs --protocol", hint=f"one of: {', '.join(sorted(CODECS))}")
        runtime_name = name or _name_of(parts.hostname, parts.port)
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", runtime_name):
            raise BenchError(f"--name {runtime_name}: lower-case letters, digits, - and _, starting with a letter",
                             hint="for example --name prod-gateway")
        if ca_cert is not None and not Path(ca_cert).is_file():
            raise BenchError(f"--ca-cert {ca_cert}: no such file", hint="a PEM file of the CA that signed the server")
        if parts.scheme != "https" and (insecure or ca_cert):
            raise BenchError("--insecure and --ca-cert apply to https:// URLs only", hint="drop them, or use https://")
        if metrics_url is not None:  # its credentials stay in memory (requests sends them); recorded redacted
            metrics_parts = urlsplit(metrics_url)
            if metrics_parts.scheme not in ("http", "https") or not metrics_parts.hostname:
                raise BenchError(f"--metrics-url {redact_uri(metrics_url)}: not an http:// or https:// URL with a "
                                 "host",
                                 hint="for example http://127.0.0.1:8080/metrics")
        if metrics_series is not None and (metrics_url is None
                                           or not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", metrics_series)):
            raise BenchError(f"--metrics-series {metrics_series}: a Prometheus metric name, with --metrics-url",
                             hint="for example --metrics-url http://127.0.0.1:8080/metrics "
                                  "--metrics-series request_predict_seconds")
        return cls(url=url, protocol=protocol, name=runtime_name, headers=tuple(_header(h) for h in given),
                   verify_tls=not insecure, ca_cert=ca_cert, metrics_url=metrics_url, metrics_series=metrics_series,
                   worker_base_url=_worker_base(worker_url, parts.scheme) if worker_url is not None else None)

    @property
    def base_url(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def predict_path(self) -> str:
        return urlsplit(self.url).path or "/"

    def runtime(self) -> RuntimeSpec:
        """The endpoint as a runtime the run can record: its name, protocol and URL, nothing to start."""
        return RuntimeSpec(name=self.name, description=f"external endpoint {self.url} (not started by servebench)",
                           protocol=self.protocol, command=["external"], readiness_path=self.predict_path,
                           predict_path=self.predict_path, settings={"endpoint": self.url},
                           serves=Serves(flavours=[ANY_FLAVOUR]),  # whatever it serves, the user pointed at it
                           metrics=MetricsSpec(duration=self.metrics_series or "") if self.metrics_url else None)


def _credentials_out(url: str) -> tuple[str, str | None]:
    """The URL without its user:password, and those as a Basic Authorization value (None without them)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
    return urlunsplit(parts._replace(netloc=host)), f"Basic {token}"


def _worker_base(worker_url: str, scheme: str) -> str:
    """--worker-url: the scheme, host and port remote workers use instead of --url's; the path is --url's."""
    parts = urlsplit(worker_url)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        parts = parts._replace(netloc="")
    if "@" in parts.netloc:
        raise BenchError(f"--worker-url {redact_uri(worker_url)}: a credential in it would travel to every worker",
                         hint="give the credential in --url or --header")
    if parts.scheme != scheme or not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BenchError(f"--worker-url {worker_url}: a {scheme}:// URL of a host and port only, where the remote "
                         "workers reach the endpoint (the path is --url's)",
                         hint=f"for example --worker-url {scheme}://iris.models.svc.cluster.local:8080")
    return f"{parts.scheme}://{parts.netloc}"


def _name_of(host: str, port: int | None) -> str:
    cleaned = re.sub(r"[^a-z0-9]+", "-", host.lower()).strip("-")
    name = f"{cleaned}-{port}" if port else cleaned
    return name if re.match(r"[a-z]", name) else f"url-{name}"


def _header(text: str) -> tuple[str, str]:
    match = HEADER.match(text)
    if match is None:  # the value may be a secret: name only the field-name characters it starts with
        start = re.match(r"[!#$%&'*+.^_`|~0-9A-Za-z-]*", text)
        shown = start.group(0) if start else ""
        raise BenchError(f"--header {shown or '(empty name)'}...: not 'Name: value'",
                         hint="for example --header 'Authorization: Bearer TOKEN'")
    name, value = match.group(1), match.group(2).strip()
    if name.lower() in RESERVED_HEADERS:
        raise BenchError(f"--header {name}: servebench sets it itself", hint="give other headers only")
    if "\r" in value or "\n" in value:
        raise BenchError(f"--header {name}: a value on one line", hint="remove the line break")
    return name, value


@dataclass(eq=False)
class ExternalDeployment(Deployment):
    """An endpoint that was running before servebench and keeps running after it."""

    def alive(self) -> bool:
        return reachable(self.endpoint.base_url) is None

    def release(self) -> None:
        """Nothing to stop: servebench did not start it."""


def reachable(base_url: str) -> str | None:
    """None when a TCP connection to the URL's host and port opens, else why not."""
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=CONNECT_TIMEOUT_S):
            return None
    except OSError as exc:
        return f"{parts.hostname}:{port}: {exc.strerror or exc}"


class UrlTarget(Target):
    name = "url"

    def __init__(self, options: UrlOptions) -> None:
        self.options = options

    def expand_runtimes(self, runtimes: list[RuntimeSpec]) -> list[RuntimeSpec]:
        return [self.options.runtime()]

    def provision(self, runtime: RuntimeSpec, log_dir: Path, say: Say) -> Provisioned:
        return Provisioned({}, Provisioning(kind="external", identity=self.options.url))

    def deploy(self, runtime: RuntimeSpec, model: LocalModel, log_dir: Path) -> Deployment:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{runtime.name}-{model.name}.log"
        log_path.write_text(f"external endpoint {self.options.url}: not started, logged or stopped by servebench\n")
        problem = reachable(self.options.base_url)
        if problem is not None:
            raise DeployError(f"{self.options.url} does not answer: {problem}",
                              hint="start the server first, or check --url")
        endpoint = Endpoint(self.options.base_url, self.options.predict_path, self.options.predict_path,
                            self.options.protocol, model.name, headers=self.options.headers,
                            verify_tls=self.options.verify_tls, ca_cert=self.options.ca_cert,
                            metrics_url=self.options.metrics_url, worker_base_url=self.options.worker_base_url)
        return ExternalDeployment(runtime=runtime, model=model, endpoint=endpoint, log_path=log_path,
                                  fairness={"server": "external: CPUs and memory not known to servebench"})
