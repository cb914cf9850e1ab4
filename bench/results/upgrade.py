"""The upgrade chain: every results.json ever written, step by step into the current shape.

`upgrade(payload)` applies upgrade_to_N for each version after the file's own, so a file of version 1
goes through upgrade_to_2, and a later version 3 only adds upgrade_to_3. Each step works on the parsed
JSON (this module is the raw JSON boundary; everything past it is typed) and must accept every file its
version ever produced: schema 1 grew keys without a bump, so upgrade_to_2 fills what early files lack
the way the report used to (a label from the load, a cell id from the position, the SLO from the
scenario).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.config import PERCENTILE_NAMES
from bench.errors import BenchError

JsonObject = dict[str, Any]  # parsed JSON at the boundary, before validation
LATENCY_KEYS = (*PERCENTILE_NAMES, "max", "mean")
RUN_FAIRNESS_KEYS = ("server_cpus", "generator_cpus", "cpu_shared")
CELL_FAIRNESS_KEYS = (*RUN_FAIRNESS_KEYS, "threads_env")
ENVIRONMENT_KEYS = ("host", "cpu_model", "cores", "usable_cpus", "memory_gb", "kernel", "python", "packages",
                    "runtime_packages", "git_sha")


def _obj(value: object) -> JsonObject:
    return value if isinstance(value, dict) else {}


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: object, default: int | None = None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _flag(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _scalar(value: object) -> str | int | float | bool:
    if isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _figures(value: object, keys: tuple[str, ...]) -> JsonObject:
    source = _obj(value)
    return {key: _number(source.get(key)) for key in keys}


def _interval(value: object) -> JsonObject | None:
    if isinstance(value, list | tuple) and len(value) == 2:
        low, high = _number(value[0]), _number(value[1])
        if low is not None and high is not None:
            return {"low": low, "high": high}
    return None


def _v1_label(cell: JsonObject) -> str:
    """Early schema-1 files have no label: derive one from the load the cell records."""
    if cell.get("label"):
        return str(cell["label"])
    users = _obj(cell.get("load")).get("users")
    offered = _number(cell.get("offered_rps"))
    base = f"users={users}" if users else f"rate={offered:g}" if offered is not None else "default"
    batch = cell.get("batch_size")
    return base if batch in (None, 1) else f"{base},batch={batch}"


def _v1_slo(cell: JsonObject, scenario: JsonObject) -> JsonObject | None:
    slo = _obj(cell.get("slo")) or _obj(scenario.get("slo"))
    ms = _number(slo.get("ms"))
    return None if ms is None else {"percentile": str(slo.get("percentile") or "p99"), "ms": ms}


def _v1_fairness(flat: JsonObject, settings: JsonObject) -> JsonObject:
    """v1 merged the runtime's knobs, the CPU plan and the target's facts into one flat mapping."""
    out: JsonObject = {"settings": {}, "target": {}}
    for key, value in flat.items():
        if key in ("server_cpus", "generator_cpus"):
            out[key] = [v for v in value if isinstance(v, int)] if isinstance(value, list) else []
        elif key == "cpu_shared":
            out[key] = _flag(value)
        elif key == "threads_env":
            out[key] = _int(value)
        elif key in settings:
            out["settings"][key] = _scalar(value)
        elif value is not None:
            out["target"][key] = _scalar(value)
    return out


def _v1_second(point: JsonObject) -> JsonObject | None:
    t = _int(point.get("t"))
    if t is None:
        return None
    return {"t": t, "requests": _int(point.get("requests"), 0), "errors": _int(point.get("errors"), 0),
            "p50_ms": _number(point.get("p50_ms")), "p99_ms": _number(point.get("p99_ms")),
            "within_slo": _int(point.get("within_slo")),
            "server_cpu_percent": _number(point.get("server_cpu_percent")),
            "server_rss_mb": _number(point.get("server_rss_mb"))}


def _v1_cell(cell: JsonObject, position: int, run: JsonObject) -> JsonObject:
    scenario = _obj(run.get("scenario"))
    runtime = str(cell.get("runtime") or "unknown")
    model = str(cell.get("model") or "unknown")
    label = _v1_label(cell)
    load = _obj(cell.get("load"))
    latency = _figures(cell.get("latency_ms"), LATENCY_KEYS)
    slo = _v1_slo(cell, scenario)
    slo_met = _flag(cell.get("slo_met"))
    if slo_met is None and slo is not None and latency.get(slo["percentile"]) is not None:
        slo_met = latency[slo["percentile"]] <= slo["ms"]
    parity = _obj(cell.get("parity"))
    server = _obj(cell.get("server"))
    generator = cell.get("generator")
    settings = _obj(_obj(_obj(run.get("runtimes")).get(runtime)).get("settings"))
    ci = _obj(cell.get("latency_ci_ms"))
    series = _list(cell.get("timeseries"))
    stages = [stage for stage in _list(load.get("stages")) if isinstance(stage, list) and len(stage) == 2]
    return {
        "cell_id": str(cell.get("cell_id") or f"{position + 1:03d}-{runtime}-{model}-{label}"),
        "runtime": runtime, "model": model, "scenario": str(cell.get("scenario") or scenario.get("name") or "-"),
        "target": str(cell.get("target") or run.get("target") or "unknown"),
        "batch_size": _int(cell.get("batch_size"), 1), "label": label,
        "load": {"loop": load.get("loop") or scenario.get("loop"), "arrival": load.get("arrival"),
                 "users": _int(load.get("users")),
                 "stages": [[float(d), float(r)] for d, r in stages if _number(d) is not None],
                 "warmup_s": _number(load.get("warmup_s")), "duration_s": _number(load.get("duration_s")),
                 "generator_processes": _int(load.get("generator_processes"), 1),
                 "offered_rps": _number(cell.get("offered_rps")), "scheduled_rps": _number(cell.get("scheduled_rps"))},
        "slo": slo,
        "parity": {"ok": _flag(parity.get("ok")), "max_abs_diff": _number(parity.get("max_abs_diff"))},
        "counts": {"requests": _int(cell.get("requests"), 0), "errors": _int(cell.get("errors"), 0)},
        "rates": {"achieved_rps": _number(cell.get("achieved_rps")),
                  "throughput_rps": _number(cell.get("throughput_rps")) or 0.0,
                  "goodput_rps": _number(cell.get("goodput_rps"))},
        "latency": latency,
        "latency_ci": {"p50": _interval(ci.get("p50")), "p99": _interval(ci.get("p99"))},
        "service": _figures(cell.get("service_ms"), LATENCY_KEYS),
        "lateness": _figures(cell.get("lateness_ms"), LATENCY_KEYS),
        "slo_met": slo_met, "measured_s": _number(cell.get("measured_s")),
        "server": _figures(server, ("cpu_percent_mean", "cpu_percent_max", "rss_mb_max", "startup_s")),
        "generator": None if not isinstance(generator, dict) else {
            "cpu_percent_max": _number(generator.get("cpu_percent_max")),
            "cpu_percent_mean": _number(generator.get("cpu_percent_mean")),
            "cpus": [c for c in generator.get("cpus") or [] if isinstance(c, int)]},
        "fairness": _v1_fairness(_obj(cell.get("fairness")), settings),
        "timeseries": [s for p in series if isinstance(p, dict) and (s := _v1_second(p)) is not None],
        "validity": {"valid": cell.get("valid") is True,
                     "reasons": [str(r) for r in cell.get("invalid_reasons") or [] if r],
                     "error": str(cell["error"]) if cell.get("error") else None,
                     "warnings": [str(w) for w in cell.get("warnings") or []]},
        "samples_file": cell.get("samples_file") or None,
    }


def _v1_provisioning(meta: JsonObject) -> JsonObject | None:
    """v1 spread what the target prepared over the runtime's entry (env_* or image_* keys)."""
    if meta.get("image"):
        facts = {key: _scalar(meta[key]) for key in ("base_image", "offline_build", "kind_cluster", "kserve_version",
                                                     "node_image") if meta.get(key) is not None}
        return {"kind": "image", "identity": str(meta["image"]), "packages": _int(meta.get("env_packages")),
                "size_mb": _number(meta.get("image_size_mb")), "build_s": _number(meta.get("image_build_s")),
                "built_now": _flag(meta.get("image_built_now")), "facts": facts}
    if meta.get("env_key"):
        return {"kind": "virtualenv", "identity": str(meta["env_key"]), "packages": _int(meta.get("env_packages")),
                "size_mb": _number(meta.get("env_size_mb")), "build_s": _number(meta.get("env_build_s")), "facts": {}}
    return None


def _v1_runtime(meta: JsonObject) -> JsonObject:
    files = meta.get("serving_code")
    return {"protocol": meta.get("protocol"), "description": str(meta.get("description") or ""),
            "settings": {str(k): _scalar(v) for k, v in _obj(meta.get("settings")).items()},
            "folder": meta.get("folder"),
            # v1 recorded the file names only; the lines were counted at render time from the folder
            "serving_code": {"files": [str(f) for f in files], "lines": None} if isinstance(files, list) else None,
            "provisioning": _v1_provisioning(meta)}


def upgrade_to_2(payload: JsonObject) -> JsonObject:
    """Flat v1 cells into typed parts; runtime metadata into records; defaults for what early files lack."""
    environment = _obj(payload.get("environment"))
    sweeps = _list(payload.get("sweeps"))
    return {
        "schema_version": 2, "run_id": str(payload.get("run_id") or ""), "created": payload.get("created"),
        "finished": payload.get("finished"), "status": payload.get("status") or "unknown",
        "environment": {key: environment[key] for key in ENVIRONMENT_KEYS if environment.get(key) is not None},
        "scenario": payload.get("scenario"), "profile": payload.get("profile"), "target": payload.get("target"),
        "fairness": {key: value for key, value in _obj(payload.get("fairness")).items() if key in RUN_FAIRNESS_KEYS},
        "runtimes": {str(name): _v1_runtime(_obj(meta)) for name, meta in _obj(payload.get("runtimes")).items()},
        "models": {str(name): {key: _obj(meta).get(key) for key in ("version", "fingerprint", "framework")}
                   for name, meta in _obj(payload.get("models")).items()},
        "cells": [_v1_cell(cell, position, payload) for position, cell in
                  enumerate(c for c in _list(payload.get("cells")) if isinstance(c, dict))],
        "sweeps": [sweep for sweep in sweeps if isinstance(sweep, dict)],
    }


def upgrade_to_3(payload: JsonObject) -> JsonObject:
    """Schema 3 adds the run-level capacity list; a schema-2 run searched none."""
    return {**payload, "schema_version": 3, "capacity": []}


def upgrade_to_4(payload: JsonObject) -> JsonObject:
    """Schema 4 adds the run-level tuning and rounds lists (a schema-3 run had neither); new cell fields
    default."""
    return {**payload, "schema_version": 4, "tuning": [], "rounds": []}


def upgrade_to_5(payload: JsonObject) -> JsonObject:
    """Schema 5 accounts for every scheduled request: old counts (requests sent in the window, errors among
    them) become scheduled = sent, failed; drops and queueing were never recorded (None); the old latency
    was success-only, and says so."""
    cells = []
    for cell in _list(payload.get("cells")):
        cell = _obj(cell)
        counts = _obj(cell.get("counts"))
        requests, errors = counts.get("requests", 0), counts.get("errors", 0)
        if isinstance(requests, int) and isinstance(errors, int):
            counts = {"scheduled": requests, "sent": requests, "completed": requests - errors, "failed": errors,
                      "dropped": None, "queued": None}
        else:  # damaged: passed on as it is, for validation to name the field
            counts = {"scheduled": requests, "sent": requests, "failed": errors, "dropped": None, "queued": None}
        cells.append({**cell, "counts": counts,
                      "latency_includes": "successful", "latency_ok": cell.get("latency") or {}})
    return {**payload, "schema_version": 5, "cells": cells}


def upgrade_to_6(payload: JsonObject) -> JsonObject:
    """Schema 6 adds each cell's optional `server_profile` and `model_cost`: older cells have neither."""
    return {**payload, "schema_version": 6}


def upgrade_to_7(payload: JsonObject) -> JsonObject:
    """Schema 7 adds the generator's remote `workers` to a cell: older cells had a local generator (none)."""
    return {**payload, "schema_version": 7}


def upgrade_to_8(payload: JsonObject) -> JsonObject:
    """Schema 8 adds a cell's `server_metrics` (the server's own clock): older cells scraped none."""
    return {**payload, "schema_version": 8}


def upgrade_to_9(payload: JsonObject) -> JsonObject:
    """Schema 9 adds a profile's `waits_counted`: a Docker cell's profile was sampled from the host until then,
    where py-spy cannot tell the container's waiting threads from running ones."""
    cells = []
    for cell in _list(payload.get("cells")):
        profile = cell.get("server_profile") if isinstance(cell, dict) else None
        if isinstance(cell, dict) and cell.get("target") == "docker" and isinstance(profile, dict):
            cell = {**cell, "server_profile": {**profile, "waits_counted": True}}
        cells.append(cell)
    return {**payload, "schema_version": 9, "cells": cells}


def upgrade_to_10(payload: JsonObject) -> JsonObject:
    """Schema 10 adds the server's queue time to `server_metrics`: older cells read none."""
    return {**payload, "schema_version": 10}


def upgrade_to_11(payload: JsonObject) -> JsonObject:
    """Schema 11 describes a team's own model; every model before it was a reference model (source null), and
    pairs a runtime could not serve were skipped without a record."""
    return {**payload, "schema_version": 11, "unsupported": []}


UPGRADES: dict[int, Callable[[JsonObject], JsonObject]] = {2: upgrade_to_2, 3: upgrade_to_3, 4: upgrade_to_4,
                                                           5: upgrade_to_5, 6: upgrade_to_6, 7: upgrade_to_7,
                                                           8: upgrade_to_8, 9: upgrade_to_9, 10: upgrade_to_10,
                                                           11: upgrade_to_11}


def upgrade(payload: JsonObject, current: int, where: str) -> JsonObject:
    """Apply every step after the file's version, in order; refuse a newer file with a hint."""
    version = payload.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BenchError(f"{where}: no schema_version", hint="not a servebench results file")
    if version > current:
        raise BenchError(f"{where}: schema version {version} is newer than this servebench ({current})",
                         hint="upgrade servebench to read it")
    for step in range(version + 1, current + 1):
        payload = UPGRADES[step](payload)
    return payload
