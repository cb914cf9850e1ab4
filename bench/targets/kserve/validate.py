"""Offline validation of rendered manifests: InferenceServices against KServe's own CRD schema, made
strict, and core objects against Kubernetes' schemas (kubernetes-validate, strict mode).

The CRD's openAPIV3Schema accepts unknown fields (the API server prunes them silently), so a misspelled
field would pass and then do nothing. Strict mode closes every object schema that lists its properties:
a typo becomes an error here, before anything reaches a cluster.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from bench.config import project_root
from bench.errors import BenchError
from bench.targets.kserve import pod_security, versions
from bench.targets.kserve.manifests import Manifest

CRD_DIR = project_root() / "tests" / "data" / "kserve"  # provenance: tests/data/kserve/README.md
INFERENCESERVICE_CRD = CRD_DIR / "serving.kserve.io_inferenceservices.yaml"
PRESERVE = "x-kubernetes-preserve-unknown-fields"


def strict(schema: Any) -> Any:
    """A copy of an OpenAPI schema in which every object with listed properties rejects other keys."""
    schema = copy.deepcopy(schema)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node and not node.get(PRESERVE):
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for item in node:
                close(item)

    close(schema)
    return schema


@functools.cache
def _crd_validator(crd_file: Path) -> jsonschema.protocols.Validator:
    try:
        crd = yaml.safe_load(crd_file.read_text())
    except OSError as exc:
        raise BenchError(f"cannot read KServe's CRD {crd_file}: {exc.strerror}",
                         hint="it is part of the checkout (tests/data/kserve/)") from None
    version = crd["spec"]["versions"][0]
    schema = strict(version["schema"]["openAPIV3Schema"])
    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return validator_class(schema)


def problems(manifest: Manifest, crd_file: Path = INFERENCESERVICE_CRD) -> list[str]:
    """Every schema violation of one manifest, then every break of the restricted pod profile in the pods it
    makes, as 'path: message' (empty when valid)."""
    return [*schema_problems(manifest, crd_file), *pod_security.problems(manifest)]


def schema_problems(manifest: Manifest, crd_file: Path = INFERENCESERVICE_CRD) -> list[str]:
    """Every schema violation of one manifest, as 'path: message' (empty when valid)."""
    kind, api_version = manifest.get("kind"), manifest.get("apiVersion")
    if kind == "InferenceService" and api_version == "serving.kserve.io/v1beta1":
        validator = _crd_validator(crd_file)
        return [f"{'.'.join(map(str, error.absolute_path)) or '(top level)'}: {error.message}"
                for error in sorted(validator.iter_errors(manifest), key=lambda e: list(map(str, e.path)))]
    import kubernetes_validate

    try:
        kubernetes_validate.validate(manifest, versions.KUBERNETES, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{'.'.join(map(str, error.path)) or '(top level)'}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"no schema for {kind} {api_version}"]
    return []


def validate(manifests: list[Manifest], where: str = "manifest") -> None:
    """Raise BenchError (exit 2) naming the first invalid manifest and its first problem."""
    for manifest in manifests:
        found = problems(manifest)
        if found:
            name = manifest.get("metadata", {}).get("name", "?")
            raise BenchError(f"{where}: {manifest.get('kind')} {name} is invalid: {found[0]}",
                             hint=f"{len(found)} problem(s); this is a bug in the manifest renderer")


class _Dumper(yaml.SafeDumper):
    """Plain YAML for kubectl and for people: no anchors, multi-line strings (a locustfile) as blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def dump(manifests: list[Manifest]) -> str:
    """Multi-document YAML, keys in the order rendered."""
    return yaml.dump_all(manifests, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)
