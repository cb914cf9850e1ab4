"""A test runtime folder with a requirements.txt of one's choosing: what the
tests of runtime environments (tests/test_envs.py) and of a model's environments (tests/test_model_envs.py)
build on."""

from __future__ import annotations

from pathlib import Path

from bench.config import RuntimeSpec, load_runtime

RUNTIME_YAML = """\
name: {name}
protocol: kserve-v1
command: ["{{python}}", "server.py", "{{port}}"]
readiness_path: /ready
predict_path: /predict
"""


def runtime_folder(root: Path, requirements: str | None, name: str = "my-runtime") -> RuntimeSpec:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "runtime.yaml").write_text(RUNTIME_YAML.format(name=name))
    if requirements is not None:
        (folder / "requirements.txt").write_text(requirements)
    return load_runtime(str(folder))
