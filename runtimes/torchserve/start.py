"""Start TorchServe for one model: archive handler.py with torch-model-archiver (the no-archive format, into
a scratch model store), write TorchServe's config.properties, and run torchserve in the foreground.

The model itself is not archived: the handler loads the MLflow model from MODEL_DIR, as every other
runtime does. Settings (environment): MODEL_NAME, MODEL_DIR, BIND_HOST (inference and metrics; management
always binds 127.0.0.1), HTTP_PORT, MANAGEMENT_PORT,
METRICS_PORT, METRICS_MODE, WORKERS, BATCH_SIZE, MAX_BATCH_DELAY_MS, WORK_DIR, SHARED_DIR (servebench_serving.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def main() -> None:
    env = os.environ
    here, work = Path(__file__).resolve().parent, Path(env["WORK_DIR"])
    bin_dir = Path(sys.executable).parent
    name, host = env["MODEL_NAME"], env.get("BIND_HOST", "127.0.0.1")
    store = work / "model-store"
    store.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(bin_dir / "torch-model-archiver"), "--model-name", name, "--version", "1.0",
                    "--handler", str(here / "handler.py"),
                    "--extra-files", str(Path(env.get("SHARED_DIR", here)) / "servebench_serving.py"),
                    "--export-path", str(store), "--archive-format", "no-archive", "--force"], check=True)
    workers, batch = int(env.get("WORKERS", "1")), int(env.get("BATCH_SIZE", "1"))
    model = {"1.0": {"defaultVersion": True, "marName": name, "minWorkers": workers, "maxWorkers": workers,
                     "batchSize": batch, "maxBatchDelay": int(env.get("MAX_BATCH_DELAY_MS", "5")),
                     "responseTimeout": 60}}
    config = work / "config.properties"
    config.write_text("\n".join([
        f"inference_address=http://{host}:{env['HTTP_PORT']}",
        # the management API registers and unregisters models: loopback only, whatever BIND_HOST says
        f"management_address=http://127.0.0.1:{env['MANAGEMENT_PORT']}",
        f"metrics_address=http://{host}:{env['METRICS_PORT']}",
        f"model_store={store}",
        f"load_models={name}",
        f"models={json.dumps({name: model})}",
        "default_workers_per_model=" + str(workers),
        "disable_system_metrics=true",
        f"metrics_mode={env.get('METRICS_MODE', 'log')}",
        "vmargs=-Xmx512m -XX:+UseContainerSupport",  # the JVM sizes its threads from the CPUs it may use
    ]) + "\n")
    os.execv(str(bin_dir / "torchserve"), [str(bin_dir / "torchserve"), "--start", "--foreground", "--ncs",
                                           "--disable-token-auth", "--ts-config", str(config),
                                           "--model-store", str(store)])


if __name__ == "__main__":
    main()
