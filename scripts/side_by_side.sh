#!/usr/bin/env bash
# Gate a change against its base commit measured side by side: the tight form of the serving-latency gate.
#
#   scripts/side_by_side.sh BASE_REF [bench run options]      # e.g. origin/main --runtime all --model iris-logreg
#
# Checks BASE_REF out into a temporary git worktree, then runs `bench run` in the base checkout and in this
# one at the same time (each with its own servers; the servers share the server CPU and the generators the
# generator CPU), and ends with `bench compare BASE HEAD`, whose exit code it returns (0 pass, 1 regression,
# 2 undetermined). Two runs made at the same time see the same machine drift, and `bench compare` pairs
# their seconds (README: side by side), which a baseline recorded earlier cannot do.
#
# The base checkout runs with this checkout's Python environment (`python -m bench.cli` from the base
# folder imports the base's own bench package); per-runtime environments are shared through the
# content-hashed cache, and the base builds its own models (deterministic). Both run folders and the
# comparison land in $OUT (default reports/side-by-side-<time>). The worktree is removed on exit.
set -euo pipefail
if [[ $# -lt 1 || "$1" == -* ]]; then
  echo "usage: scripts/side_by_side.sh BASE_REF [bench run options]" >&2
  exit 2
fi
base_ref=$1
shift
cd "$(dirname "$0")/.."
head_dir=$PWD
python=${PYTHON:-$head_dir/.venv/bin/python}
out=${OUT:-reports/side-by-side-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
out=$(cd "$out" && pwd)

if ! git rev-parse --verify --quiet "$base_ref^{commit}" >/dev/null; then
  echo "error: $base_ref is not a commit here (hint: git fetch origin, then pass origin/main)" >&2
  exit 2
fi
base_dir=$(mktemp -d "${TMPDIR:-/tmp}/servebench-base.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  git worktree remove --force "$base_dir" >/dev/null 2>&1 || rm -rf "$base_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
git worktree add --detach --quiet "$base_dir" "$base_ref"
echo "base $(git -C "$base_dir" rev-parse --short HEAD) ($base_ref) and head $(git rev-parse --short HEAD) side by side; runs in $out"

# Models first (those named by --model, else all), one checkout at a time, so both runs start measuring
# together.
models=()
for ((i = 1; i <= $#; i++)); do
  if [[ "${!i}" == --model ]]; then j=$((i + 1)); models=(--model "${!j}"); fi
  if [[ "${!i}" == --model=* ]]; then models=(--model "${!i#--model=}"); fi
done
(cd "$base_dir" && "$python" -m bench.cli models build "${models[@]}") >"$out/models.log" 2>&1
"$python" -m bench.cli models build "${models[@]}" >>"$out/models.log" 2>&1

# The same arrival schedule (the same load, burst for burst), the head half a second after the base: started
# together, the two would send it a few milliseconds apart, in lockstep, and one server would wait behind
# the other on every request.
(cd "$base_dir" && exec "$python" -m bench.cli run --no-mlflow --out "$out/base" "$@") >"$out/base.log" 2>&1 &
pids+=($!)
sleep 0.5
(exec "$python" -m bench.cli run --no-mlflow --out "$out/head" "$@") >"$out/head.log" 2>&1 &
pids+=($!)
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
pids=()
if [[ $status -ne 0 ]]; then
  echo "error: a bench run failed (exit $status); see $out/base.log and $out/head.log" >&2
  exit 2
fi
set +e
"$python" -m bench.cli compare "$out/base" "$out/head" --format md >"$out/compare.md"
code=$?
set -e
cat "$out/compare.md"
exit "$code"
