# Two entry points for a fresh machine: `make bench` (the main job) and `make test` (what CI runs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup bench test lint unit integration clean-state

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# The main job: every runtime under the default model and scenario, 15 s measured each (smoke run length).
# `bench run` provisions what is missing (models, per-runtime environments) itself; building the
# environments first shows progress.
bench: setup
	$(BIN)/bench envs build --runtime all
	$(BIN)/bench run --runtime all --length smoke

lint: setup
	$(BIN)/ruff check bench tests runtimes
	$(BIN)/mypy bench

unit: setup
	$(BIN)/pytest -m "not integration" -q

# Integration tests start every runtime for real; environments are built (or reused) first.
integration: setup
	$(BIN)/bench models build
	$(BIN)/bench envs build --runtime all
	$(BIN)/pytest -m integration -q

# Images are built (or reused) up front when a Docker daemon answers, so their build time shows here;
# SERVEBENCH_BASE_IMAGE / SERVEBENCH_DOCKER_OFFLINE choose the base image and the offline build.
test: lint
	$(BIN)/bench models build
	$(BIN)/bench envs build --runtime all
	@if docker version >/dev/null 2>&1; then $(BIN)/bench images build --runtime all; fi
	$(BIN)/pytest -q --durations=20

clean-state:
	rm -rf .servebench
