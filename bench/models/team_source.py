"""Where a team's model comes from: `models:/NAME/VERSION`, `models:/NAME@ALIAS`, `models:/NAME/latest`,
`runs:/RUN_ID/PATH` or a local MLflow model folder, resolved in its tracking store (MLFLOW_TRACKING_URI or
--tracking-uri, else servebench's own) and copied locally under its content hash. A dead or refusing store
and an unknown name or version are one-line BenchErrors with a hint, never MLflow's retries for minutes.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.config import state_dir
from bench.errors import BenchError
from bench.models.tracking import tracking_uri
from bench.models.trust import check_artifact, content_hash
from bench.redact import redact_uri

FORMS = "models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN_ID/PATH or a local MLflow model folder"
REGISTERED = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+|latest)|@(?P<alias>[\w-]+))$")
RUN = re.compile(r"^runs:/(?P<run_id>[0-9a-zA-Z]+)/(?P<path>.+)$")
HASH_FILE = "content-sha256"  # beside the local copy: the artifact's full content hash
Say = Callable[[str], None]


def is_model_uri(value: str) -> bool:
    """Whether --model's value names a team's model rather than a reference model (or 'all')."""
    return value.startswith(("models:/", "runs:/", "file:", "/", "./", "../", "~")) or os.sep in value \
        or Path(value).expanduser().is_dir()



def suggest_uri(name: str, tracking_uri: str | None = None) -> BenchError:
    """An unknown --model name; when a registered model has that name, the URI that names it."""
    from bench.models.catalog import model_names

    hint = f"valid: {', '.join(model_names())}, all, or {FORMS}"
    store = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if store is None:  # servebench's own store, looked in only if it exists: a usage error writes nothing
        if not (state_dir() / "mlflow.db").is_file():
            return BenchError(f"unknown model '{redact_uri(name)}'", hint=hint)
        store = default_tracking_uri()
    try:
        with quick_failing_mlflow(store):
            from mlflow.tracking import MlflowClient

            versions = MlflowClient(tracking_uri=store, registry_uri=store).search_model_versions(f"name='{name}'")
    except Exception:  # no store, or no such model: the plain hint
        return BenchError(f"unknown model '{redact_uri(name)}'", hint=hint)
    if versions:
        latest = max(int(v.version) for v in versions)
        hint = f"'{name}' is a registered model: give models:/{name}/{latest} (or models:/{name}@ALIAS)"
    return BenchError(f"unknown model '{redact_uri(name)}'", hint=hint)


# ---- resolving the URI in its store -----------------------------------------------------------------


def default_tracking_uri() -> str:
    return tracking_uri()


@contextlib.contextmanager
def quick_failing_mlflow(store: str) -> Iterator[None]:
    """MLflow pointed at the store, retrying a dead server once rather than for minutes. set_tracking_uri
    exports MLFLOW_TRACKING_URI (and the registry's) into this process's environment: put back as it was."""
    import mlflow

    keys = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_TRACKING_URI",
            "MLFLOW_REGISTRY_URI")
    saved = {key: os.environ.get(key) for key in keys}
    os.environ.update({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"})
    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _store_error(exc: Exception, store: str, what: str) -> BenchError:
    """An MLflow or network failure as one line: unreachable, refused (auth), or not found."""
    text = redact_uri(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    where = redact_uri(store)
    if any(code in text for code in ("401", "403", "Unauthorized", "Forbidden", "PERMISSION_DENIED",
                                     "UNAUTHENTICATED")):
        return BenchError(f"the tracking server at {where} refused {what}: {text[:200]}",
                          hint="set MLFLOW_TRACKING_TOKEN (or MLFLOW_TRACKING_USERNAME and _PASSWORD)")
    if any(word in text for word in ("Connection", "connect", "Max retries", "timed out", "Name or service")):
        return BenchError(f"cannot reach the tracking server at {where}: {text[:200]}",
                          hint="check MLFLOW_TRACKING_URI (or --tracking-uri) and that the server is up")
    return BenchError(f"{what} in {where}: {text[:200]}", hint=f"give {FORMS}")


def resolve_uri(uri: str, store: str) -> tuple[str, str, str | None, str]:
    """(the URI to download, the version, the run id, the name to call it) for any accepted form."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    folder = Path(uri.removeprefix("file://")).expanduser()
    if not uri.startswith(("models:/", "runs:/")):
        if not (folder / "MLmodel").is_file():
            problem = "no MLmodel file in that folder" if folder.is_dir() else "no such folder"
            raise BenchError(f"unknown model '{redact_uri(uri)}': {problem}",
                             hint=f"give a reference model name, or {FORMS}")
        name = folder.resolve().name if folder.resolve().name != "model" else folder.resolve().parent.name
        return str(folder.resolve()), "local", None, slug(name)
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    run = RUN.match(uri)
    if run is not None:
        try:
            client.get_run(run["run_id"])
        except MlflowException as exc:
            raise _store_error(exc, store, f"run {run['run_id']}") from None
        except Exception as exc:  # requests' and urllib3's own errors when the server is down
            raise _store_error(exc, store, f"run {run['run_id']}") from None
        return uri, run["run_id"][:12], run["run_id"], slug(f"run-{run['run_id'][:8]}")
    registered = REGISTERED.match(uri)
    if registered is None:
        raise BenchError(f"unknown model '{redact_uri(uri)}'", hint=f"give {FORMS}")
    name = registered["name"]
    try:
        if registered["alias"]:
            found = client.get_model_version_by_alias(name, registered["alias"])
        elif registered["version"] == "latest":
            versions = client.search_model_versions(f"name='{name}'")
            if not versions:
                raise BenchError(f"no registered model '{name}' in {redact_uri(store)}", hint=f"give {FORMS}")
            found = max(versions, key=lambda v: int(v.version))
        else:
            found = client.get_model_version(name, registered["version"])
    except MlflowException as exc:
        raise _not_found(client, name, registered["version"] or registered["alias"], exc, store) from None
    except BenchError:
        raise
    except Exception as exc:
        raise _store_error(exc, store, f"model '{name}'") from None
    return f"models:/{name}/{found.version}", str(found.version), found.run_id, slug(name)


def _not_found(client: Any, name: str, wanted: str, exc: Exception, store: str) -> BenchError:
    """Not found: say which versions exist, so a typo is one look away."""
    try:
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
    except Exception:
        versions = []
    if versions:
        return BenchError(f"model '{name}' has no version or alias '{wanted}' in {redact_uri(store)}",
                          hint=f"registered versions: {', '.join(map(str, versions))}")
    error = _store_error(exc, store, f"model '{name}'")
    if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc).lower():
        return BenchError(f"no registered model '{name}' in {redact_uri(store)}",
                          hint="check the name, or set MLFLOW_TRACKING_URI (or --tracking-uri) to its store")
    return error


def slug(name: str) -> str:
    """A name servers, URLs, files and Kubernetes accept: lowercase letters, digits and dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-")
    if not slug or not slug[0].isalpha():
        slug = f"m-{slug}".strip("-")
    return slug


# ---- the local copy ------------------------------------------------------------------------------------


def team_root() -> Path:
    return state_dir() / "models" / "team"


def local_copy(resolved: str, name: str, store: str, say: Say) -> Path:
    """Download (or copy) the artifact, then keep it under its content hash: <team>/<name>/<hash16>/model."""
    import mlflow

    root = team_root() / name
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        if resolved.startswith(("models:/", "runs:/")):
            say(f"{name}: downloading {resolved}")
            try:
                mlflow.artifacts.download_artifacts(artifact_uri=resolved, dst_path=str(staging / "model"),
                                                    tracking_uri=store)
            except Exception as exc:
                raise _store_error(exc, store, f"the artifacts of {resolved}") from None
        else:
            shutil.copytree(resolved, staging / "model")
        if not (staging / "model" / "MLmodel").is_file():
            raise BenchError(f"{resolved} holds no MLmodel file: not an MLflow model",
                             hint="runs:/RUN_ID/PATH must name the folder the model was logged to")
        digest = content_hash(staging / "model")
        if resolved.startswith(("models:/", "runs:/")):  # a version: immutable, so its content must not change
            check_artifact(store, resolved, digest)
        final = root / digest[:16]
        if not (final / HASH_FILE).is_file() or content_hash(final / "model") != digest:  # changed on disk: replace
            if final.exists():
                shutil.rmtree(final)
            final.mkdir()
            (staging / "model").rename(final / "model")
            (final / HASH_FILE).write_text(digest)  # written last: the copy is complete
        return final
    finally:
        shutil.rmtree(staging, ignore_errors=True)
