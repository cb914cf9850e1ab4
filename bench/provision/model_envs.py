"""A runtime's environment for a given model: the runtime's pinned server packages plus the model's own
recorded requirements (MLflow's requirements.txt), cached by the hash of both.

The runtime's pins always win: an environment never holds a library at a version other than the one the
runtime was locked with, so a team's model is served by the same server stack as the reference models.
Comparing the model's requirements with those pins gives one of four plans:

- not applicable: the runtime loads no MLflow artifact (it serves an ONNX export), so the model's
  requirements say nothing about it;
- satisfied: every requirement is met by a pin -> the runtime's own environment, unchanged, no build
  (the common case: costs one read of requirements.txt);
- derived: some requirements name packages the runtime does not pin (skops, xgboost...) -> a virtualenv
  of `pip install -r requirements.txt -c requirements.txt <missing...>`, cached beside the runtime's as
  `<runtime>-model-<key>`; when pip cannot resolve that, the pair is unsupported with pip's reason;
- unsupported: a pin outside the model's specifier, in a *decisive* package.

Policy for a pin outside the model's specifier (deliberate). Decisive packages are the libraries of the
model's flavours (sklearn -> scikit-learn, pytorch -> torch, tensorflow/keras -> tensorflow and keras,
xgboost, lightgbm, onnx; any other flavour -> the package of its name; python_function alone -> none) and
`mlflow` when the runtime's major version is outside the model's specifier: the artifact itself may not
load, so the pair is unsupported ("mlserver needs scikit-learn==1.9.1, the model needs
scikit-learn==1.5.2"). A difference in any other package both pin (numpy, pandas, scipy, cloudpickle...)
is a recorded Difference, never silent: callers show it in results and reports, and parity (the runtime's
answers against the reference outputs) is the judge. Seldon pins numpy 1.26.4 (seldon-core 1.18.2 needs
numpy<2) where models logged here record numpy==2.4.6: a difference, not unsupported. With strict=True
every such pin makes the pair unsupported. A model's `mlflow` requirement is met by the runtime pinning
`mlflow` or `mlflow-skinny` (which loads the same flavours).
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from packaging.markers import UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from bench.config import RuntimeSpec, env_cache_dir
from bench.errors import BenchError
from bench.provision.cache_lock import cache_lock
from bench.provision.envs import (
    Report,
    RuntimeEnv,
    build_env,
    build_log,
    env_key,
    install_env,
    load_env_at,
    pinned_requirements,
)
from bench.provision.pip_output import resolution_failure as resolution_failure

# Flavours whose library is not the package of the flavour's name.
FLAVOUR_PACKAGES: dict[str, tuple[str, ...]] = {
    "python_function": (),
    "sklearn": ("scikit-learn",),
    "pytorch": ("torch",),
    "tensorflow": ("tensorflow", "keras"),
    "keras": ("keras", "tensorflow"),
    "spark": ("pyspark",),
    "paddle": ("paddlepaddle",),
}
# A requirement on one of these is met by a pin of any of them (mlflow-skinny loads the same flavours).
ALIASES: dict[str, tuple[str, ...]] = {
    "mlflow": ("mlflow", "mlflow-skinny"),
    "mlflow-skinny": ("mlflow-skinny", "mlflow"),
}
MAJOR_ONLY = frozenset({"mlflow", "mlflow-skinny"})  # decisive only when the major version differs
UNSUPPORTED_RECORD = ".unsupported.json"  # beside a derived env that pip could not resolve
COMMENT = re.compile(r"(^|\s+)#.*$")  # pip's rule: '#' at the start or after whitespace (not in a URL)


class PlanKind(StrEnum):
    NOT_APPLICABLE = "not applicable"
    SATISFIED = "satisfied"
    DERIVED = "derived"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class Difference:
    """A package the runtime pins outside the model's specifier: the runtime's version is what is installed."""

    package: str  # canonical name the model requires
    runtime_version: str
    model_specifier: str  # "==2.4.6", or "@ URL" for a direct reference
    runtime_package: str = ""  # what the runtime pins when it is another name (mlflow-skinny for mlflow)

    @property
    def runtime_side(self) -> str:
        return f"{self.runtime_package or self.package}=={self.runtime_version}"

    @property
    def model_side(self) -> str:
        return f"{self.package}{' ' if self.model_specifier.startswith('@') else ''}{self.model_specifier}"

    def __str__(self) -> str:
        return f"{self.runtime_side} (the model records {self.model_side})"


@dataclass(frozen=True)
class EnvPlan:
    """What a runtime's environment for a model must be; derived from requirement texts and pins alone."""

    runtime: str
    applicable: bool = True
    missing: tuple[str, ...] = ()  # the model's requirements the runtime does not pin, normalised and sorted
    differences: tuple[Difference, ...] = ()  # tolerated: recorded, parity judges
    conflicts: tuple[Difference, ...] = ()  # decisive (or any, when strict): the pair is unsupported

    @property
    def kind(self) -> PlanKind:
        if not self.applicable:
            return PlanKind.NOT_APPLICABLE
        if self.conflicts:
            return PlanKind.UNSUPPORTED
        return PlanKind.DERIVED if self.missing else PlanKind.SATISFIED

    @property
    def reason(self) -> str | None:
        """One line: "mlserver needs scikit-learn==1.9.1, the model needs scikit-learn==1.5.2"."""
        if not self.conflicts:
            return None
        return (f"{self.runtime} needs {' and '.join(c.runtime_side for c in self.conflicts)}, "
                f"the model needs {' and '.join(c.model_side for c in self.conflicts)}")


@dataclass(frozen=True)
class ModelEnv:
    """The environment to serve the model in: the runtime's own, or one derived from it for the model."""

    env: RuntimeEnv
    plan: EnvPlan
    built_now: bool

    @property
    def derived(self) -> bool:
        return self.plan.kind is PlanKind.DERIVED

    @property
    def differences(self) -> tuple[Difference, ...]:
        return self.plan.differences


@dataclass(frozen=True)
class Unsupported:
    """The runtime cannot serve the model in an environment true to both: skip the pair with the reason."""

    runtime: str
    reason: str
    differences: tuple[Difference, ...] = ()


def parse_requirements(lines: Iterable[str]) -> list[Requirement]:
    """The requirements that apply on this interpreter: comments, blank lines and pip options (-r, -c,
    --index-url...) skipped, markers evaluated here; a line that is no requirement raises BenchError."""
    requirements = []
    for line in _logical_lines(lines):
        text = COMMENT.sub("", line).strip()
        if not text or text.startswith("-"):
            continue
        try:
            requirement = Requirement(text)
            applies = requirement.marker is None or requirement.marker.evaluate({"extra": ""})
        except (InvalidRequirement, UndefinedComparison, UndefinedEnvironmentName) as exc:
            first = str(exc).splitlines()[0]
            raise BenchError(f"the model's requirement '{text}' is not a valid requirement: {first}",
                             hint="the model's requirements.txt (written by MLflow) holds one requirement a line: "
                                  "fix or remove that line") from None
        if applies:
            requirements.append(requirement)
    return requirements


def _logical_lines(lines: Iterable[str]) -> Iterable[str]:
    """Lines with pip's backslash continuations joined."""
    pending = ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1]
            continue
        yield pending + line
        pending = ""
    if pending:
        yield pending


def requirement_text(requirement: Requirement) -> str:
    """The requirement as pip is given it: canonical name, sorted extras, normalised specifier, no marker
    (already evaluated true), so the same requirement always hashes the same."""
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    target = f" @ {requirement.url}" if requirement.url else str(requirement.specifier)
    return f"{canonicalize_name(requirement.name)}{extras}{target}"


def decisive_packages(flavours: Iterable[str]) -> frozenset[str]:
    """The libraries the model's flavours load it with: a pin of them outside the model's specifier may not
    load the artifact at all."""
    packages: set[str] = set()
    for flavour in flavours:
        packages.update(FLAVOUR_PACKAGES.get(flavour, (flavour,)))
    return frozenset(canonicalize_name(package) for package in packages)


def plan_model_env(runtime: str, pins: Mapping[str, str], model_requirements: Iterable[str],
                   flavours: Iterable[str], *, loads_model_artifact: bool = True, strict: bool = False,
                   model_python: str | None = None, runtime_python: str = platform.python_version()) -> EnvPlan:
    """Compare the model's requirement lines with the runtime's pins (name -> version); no I/O. model_python
    (python_env.yaml's `python`) is compared by major.minor: the environments run on this interpreter, so a
    model trained on another Python is a recorded difference (unsupported when strict)."""
    if not loads_model_artifact:
        return EnvPlan(runtime, applicable=False)
    canonical_pins: dict[str, str] = {canonicalize_name(name): version for name, version in pins.items()}
    decisive = decisive_packages(flavours)
    missing: set[str] = set()
    differences: list[Difference] = []
    conflicts: list[Difference] = []
    if model_python and model_python.split(".")[:2] != runtime_python.split(".")[:2]:
        (conflicts if strict else differences).append(Difference("python", runtime_python, f"=={model_python}"))
    for requirement in parse_requirements(model_requirements):
        name = canonicalize_name(requirement.name)
        pinned = _pin_for(name, canonical_pins)
        if pinned is None:
            missing.add(requirement_text(requirement))
            continue
        runtime_package, version = pinned
        if requirement.url is None and _satisfied(requirement.specifier, version):
            if requirement.extras:  # the extras may pull in packages the runtime's lock does not hold
                missing.add(requirement_text(requirement))
            continue
        specifier = f"@ {requirement.url}" if requirement.url else str(requirement.specifier)
        difference = Difference(name, version, specifier, "" if runtime_package == name else runtime_package)
        if strict or _is_decisive(name, version, requirement, decisive):
            conflicts.append(difference)
        else:
            differences.append(difference)
    return EnvPlan(runtime, True, tuple(sorted(missing)), tuple(differences), tuple(conflicts))


def _satisfied(specifier: SpecifierSet, pinned: str) -> bool:
    """The pin meets the specifier; `==2.13.0+cpu` (the build the model was trained with) is met by a pin of
    the same release without a local label, which resolves to the build this machine installs (torch's CPU
    wheel here): a local label names a build of one release, not another release."""
    if specifier.contains(pinned, prereleases=True):
        return True
    exact = [clause for clause in specifier if clause.operator in ("==", "===")]
    try:
        return bool(exact) and len(exact) == len(list(specifier)) and "+" not in pinned and all(
            Version(clause.version).public == Version(pinned).public for clause in exact)
    except InvalidVersion:
        return False


def _pin_for(name: str, pins: Mapping[str, str]) -> tuple[str, str] | None:
    for candidate in ALIASES.get(name, (name,)):
        if candidate in pins:
            return candidate, pins[candidate]
    return None


def _is_decisive(name: str, version: str, requirement: Requirement, decisive: frozenset[str]) -> bool:
    if name in MAJOR_ONLY:
        return requirement.url is not None or not _admits_major(requirement.specifier, version)
    return name in decisive


def _admits_major(specifier: SpecifierSet, version: str) -> bool:
    """Whether any release of version's major is in the specifier: mlflow==2.9.0 admits none of 3.x,
    mlflow>=3.1,<3.5 does. Candidates: the major's bounds and each version the specifier names, at and
    just above it (an intersection of intervals is empty unless one of its edges is inside it)."""
    try:
        major = Version(version).major
    except InvalidVersion:
        return False
    candidates = [f"{major}", f"{major}.{10**6}"]
    for clause in specifier:
        bound = clause.version.rstrip(".*")
        try:
            named = Version(bound)
        except InvalidVersion:
            continue
        if named.major == major:
            candidates += [named.base_version, f"{named.base_version}.1"]
    return any(specifier.contains(candidate, prereleases=True) for candidate in candidates)


def model_env_key(spec: RuntimeSpec, missing: Sequence[str]) -> str:
    """Hash of the runtime's requirements.txt, the added requirements and the interpreter they resolve for."""
    digest = hashlib.sha256(spec.requirements_file.read_bytes())
    digest.update(b"\0" + "\n".join(sorted(missing)).encode())
    digest.update(f"\0{sys.version_info.major}.{sys.version_info.minor}-{platform.machine()}".encode())
    return digest.hexdigest()[:16]


def model_env_path(spec: RuntimeSpec, missing: Sequence[str]) -> Path:
    return env_cache_dir() / f"{spec.build_name}-model-{model_env_key(spec, missing)}"


def model_env(spec: RuntimeSpec, model_requirements: Sequence[str], flavours: Sequence[str],
              report: Report = lambda _r, _s: None, *, loads_model_artifact: bool = True, strict: bool = False,
              model_python: str | None = None, force: bool = False) -> ModelEnv | Unsupported:
    """The environment the runtime serves the model in, built or reused; or why the two cannot go together.
    BenchError only for what the user must fix (a bad requirement line, a build that failed for another
    reason than resolution: the network, the disk). force rebuilds a derived environment and asks pip again
    about a pair it refused before (a refusal is remembered under the same key)."""
    env_key(spec)  # a runtime without requirements.txt: BenchError naming its folder
    plan = plan_model_env(spec.name, pinned_requirements(spec), model_requirements, flavours,
                          loads_model_artifact=loads_model_artifact, strict=strict, model_python=model_python)
    if plan.kind is PlanKind.UNSUPPORTED:
        assert plan.reason is not None
        return Unsupported(spec.name, plan.reason, plan.differences)
    if plan.kind is not PlanKind.DERIVED:
        env, built = build_env(spec, report)
        return ModelEnv(env, plan, built)
    return _derived_env(spec, plan, report, force)


def _derived_env(spec: RuntimeSpec, plan: EnvPlan, report: Report, force: bool) -> ModelEnv | Unsupported:
    """Under the cache key's lock, like the runtime's own environment: a second process waits and reuses."""
    path = model_env_path(spec, plan.missing)
    found = None if force else _load_derived(spec, path, plan)
    if found is not None:
        report(spec.name, _cached_status(found, path))
        return found
    with cache_lock(path):
        found = None if force else _load_derived(spec, path, plan)
        if found is not None:
            report(spec.name, _cached_status(found, path) + ", built meanwhile by another process")
            return found
        return _build_derived(spec, path, plan, report)


def _cached_status(found: ModelEnv | Unsupported, path: Path) -> str:
    return f"cached ({path.name})" if isinstance(found, ModelEnv) else f"unsupported, known ({path.name})"


def _load_derived(spec: RuntimeSpec, path: Path, plan: EnvPlan) -> ModelEnv | Unsupported | None:
    env = load_env_at(spec.name, path)
    if env is not None:
        return ModelEnv(env, plan, built_now=False)
    record = path.with_name(path.name + UNSUPPORTED_RECORD)
    if record.is_file():
        return Unsupported(spec.name, str(json.loads(record.read_text())["reason"]), plan.differences)
    return None


def _build_derived(spec: RuntimeSpec, path: Path, plan: EnvPlan, report: Report) -> ModelEnv | Unsupported:
    requirements = str(spec.requirements_file)
    record = path.with_name(path.name + UNSUPPORTED_RECORD)
    record.unlink(missing_ok=True)
    base, _built = build_env(spec, report)
    report(spec.name, f"adding the model's {', '.join(plan.missing)}")
    try:
        env = install_env(spec.name, path, model_env_key(spec, plan.missing), ["-c", requirements, *plan.missing],
                          report, base=base, requirements=requirements, model_requirements=list(plan.missing))
    except BenchError:
        log = build_log(path)
        reason = resolution_failure(log.read_text() if log.is_file() else "")
        if reason is None:
            raise
        shutil.rmtree(path, ignore_errors=True)  # a venv that will never be complete
        reason = f"{spec.name}'s pins and the model's {', '.join(plan.missing)} do not resolve: {reason}"
        record.write_text(json.dumps({"reason": reason, "log": str(log)}))
        report(spec.name, "unsupported: pip cannot resolve the model's requirements with the runtime's pins")
        return Unsupported(spec.name, reason, plan.differences)
    return ModelEnv(env, plan, built_now=True)
