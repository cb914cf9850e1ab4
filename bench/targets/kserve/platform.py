"""A runtime's own platform object (runtime.yaml's `platform:`: a SeldonDeployment, a KubeRay RayService)
rendered from a template in its folder, beside its InferenceServices, by the KServe target's dry run.

Every pod in it is hardened as the InferenceService's are (pod_security.hardened: restricted profile, no API
token, an emptyDir behind each scratch mount). The template is YAML. A string that is exactly "{container}"
becomes the predictor container the InferenceService runs (the same image, command, env, probes and
resources); every other string has its {placeholders} filled in, and one that is a single placeholder of a
number becomes that number.

Validation, as far as offline schemas allow: no CRD schema of Seldon Core or KubeRay ships with the project
(only KServe's), so the object itself is checked for its apiVersion, kind and name, and every pod spec
inside it (`pod_specs`) strictly against Kubernetes' own PodSpec schema (kubernetes-validate).
"""

from __future__ import annotations

from typing import Any

import yaml

from bench.config import RuntimeSpec
from bench.errors import BenchError
from bench.runtime_options import PLACEHOLDER
from bench.targets.kserve.manifests import NAMESPACE, Manifest
from bench.targets.kserve.pod_security import hardened
from bench.targets.kserve.validate import problems

CONTAINER = "{container}"


def _fill(node: Any, values: dict[str, Any], container: Manifest) -> Any:
    if isinstance(node, dict):
        return {key: _fill(value, values, container) for key, value in node.items()}
    if isinstance(node, list):
        return [_fill(item, values, container) for item in node]
    if not isinstance(node, str):
        return node
    if node == CONTAINER:
        return container
    whole = PLACEHOLDER.fullmatch(node)
    if whole and whole.group(1) in values:
        return values[whole.group(1)]  # keeps numbers numbers
    unknown = [name for name in PLACEHOLDER.findall(node) if name not in values]
    if unknown:
        raise BenchError(f"platform template: unknown placeholder '{{{unknown[0]}}}'",
                         hint=f"known: {', '.join(sorted(values))}, and {CONTAINER} alone")
    return PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), node)


def render_platform(runtime: RuntimeSpec, name: str, values: dict[str, Any], container: Manifest,
                    uid: int) -> Manifest:
    """The runtime's platform object for one model, its pods run as uid; values: model_name, image, port..."""
    platform = runtime.platform
    if platform is None:
        raise ValueError(f"{runtime.name} declares no platform object")
    path = runtime.folder / platform.template
    try:
        template = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise BenchError(f"{path}: cannot read the platform template: {exc}") from None
    manifest: Manifest = hardened(_fill(template, {**values, "name": name, "namespace": NAMESPACE}, container),
                                  uid)
    found = platform_problems(manifest, runtime)
    if found:
        raise BenchError(f"{path}: the rendered {platform.kind} is invalid: {found[0]}",
                         hint=f"{len(found)} problem(s) in all")
    return manifest


def _at(manifest: Manifest, dotted: str) -> Any:
    node: Any = manifest
    for part in dotted.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def platform_problems(manifest: Manifest, runtime: RuntimeSpec) -> list[str]:
    """What offline checks find wrong: the object's identity, then each pod spec as Kubernetes sees it."""
    platform = runtime.platform
    assert platform is not None
    found = []
    if (manifest.get("apiVersion"), manifest.get("kind")) != (platform.api_version, platform.kind):
        found.append(f"(top level): expected {platform.api_version} {platform.kind}")
    if not isinstance(manifest.get("metadata"), dict) or not manifest["metadata"].get("name"):
        found.append("metadata.name: missing")
    for dotted in platform.pod_specs:
        try:
            spec = _at(manifest, dotted)
        except (KeyError, IndexError, TypeError, ValueError):
            found.append(f"{dotted}: no pod spec there")
            continue
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pod-spec-check"}, "spec": spec}
        found += [f"{dotted}.{problem}" for problem in problems(pod)]
    return found
