#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one call of under 8 minutes on an H100/H200:
# builds gencodec with CUDA, runs the CUDA-marked tests, benchmarks/rcc.py (CUDA
# column), the DiffC SD 2.1-architecture timing at 512x768 (benchmarks/diffc.py
# --sd21) and the filter's SD 2.1-size one-step model at 1080p in fp16
# (benchmarks/filter.py --gpu-only), and writes one JSON summary, gpu_checks.json,
# with the full log beside it. A failing step is recorded and the next one runs; a
# step that would pass the total time budget is cut short or skipped.
#
#   scripts/gpu_checks.sh --fetch-wheels   # here (PyPI reachable): the packages the GPU
#                                          # image lacks, as cp312 wheels into .whl/
#   scripts/gpu_checks.sh [OUT_DIR]        # there: results into OUT_DIR (default $OUT,
#                                          # else ./gpu-checks-out)
#
# Environment: GPU_CHECKS_BUDGET (total seconds, default 450), PYTHON (default python3).
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}

if [ "${1:-}" = "--fetch-wheels" ]; then
  # Pinned to the versions the CPU machines test with; diffusers' and PyAV's needs that
  # the GPU image lacks are listed too (it has torch, numpy, scipy, pillow, safetensors,
  # huggingface-hub, scikit-image, pytest, scikit-build-core, pybind11, cmake, ninja).
  exec "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    av==18.1.0 constriction==0.5.0 pillow-heif==1.8.1 diffusers==0.42.1 \
    importlib-metadata==10.2.0
fi

OUT_DIR=${1:-${OUT:-$ROOT/gpu-checks-out}}
mkdir -p "$OUT_DIR"
BUDGET=${GPU_CHECKS_BUDGET:-450}
WORK=$(mktemp -d)
LOG="$OUT_DIR/gpu_checks.log"
STEPS="$WORK/steps.tsv"
: >"$LOG"
: >"$STEPS"
START=$(date +%s)
export PYTHONUNBUFFERED=1

# step NAME SECONDS COMMAND...: runs COMMAND with at most SECONDS (less when the budget
# is nearly spent), logs it, and records name, status, exit code and duration.
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET - ($(date +%s) - START) - 10))  # 10 s kept for the summary
  if [ "$left" -lt 15 ]; then
    printf '%s\tskipped\t-1\t0\n' "$name" >>"$STEPS"
    echo "== $name: skipped (time budget spent)" | tee -a "$LOG"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (at most ${limit} s): $*" | tee -a "$LOG"
  local t0 rc status
  t0=$(date +%s)
  timeout --kill-after=5 "$limit" "$@" >"$WORK/$name.out" 2>&1
  rc=$?
  cat "$WORK/$name.out" >>"$LOG"
  status=ok
  [ "$rc" -ne 0 ] && status=failed
  [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && status=timeout
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$(($(date +%s) - t0))" >>"$STEPS"
  echo "== $name: $status (exit $rc, $(($(date +%s) - t0)) s)" | tee -a "$LOG"
}

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  step wheels 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$WORK/site" .whl/*.whl
  export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi

step device 30 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv && \
  $PY -c 'import torch; print(\"torch\", torch.__version__, \"cuda\", torch.cuda.is_available())'"

# No build isolation: the GPU machine reaches no package index.
step build 240 "$PY" -m pip install -q --no-deps --no-build-isolation \
  -C cmake.define.GENCODEC_CUDA=ON -C build-dir=build/gpu-checks -e .

step native 30 "$PY" -c "from gencodec import _native; i = _native.build_info(); print(i); \
assert i['cuda_compiled'] and i['cuda_devices'] > 0, 'no usable CUDA device'"

TEST_DIRS="tests/rcc tests/diffc tests/filters"
for d in tests/surrogates tests/train; do [ -d "$d" ] && TEST_DIRS="$TEST_DIRS $d"; done
# shellcheck disable=SC2086  # the directories are words
step cuda_tests 150 "$PY" -m pytest -q -m cuda -p no:cacheprovider $TEST_DIRS

step rcc_bench 90 "$PY" benchmarks/rcc.py --dims 256 1024 4096 --repeats 3 \
  --json "$WORK/rcc.json"

step diffc_sd21 180 "$PY" benchmarks/diffc.py --sd21 --no-rd --repeats 1 \
  --json "$WORK/diffc.json"

step filter_sd21_1080p 150 "$PY" benchmarks/filter.py --gpu-only --json "$WORK/filter.json"

"$PY" - "$STEPS" "$WORK" "$OUT_DIR/gpu_checks.json" "$START" "$BUDGET" <<'EOF'
import json, sys, time
from pathlib import Path

steps_tsv, work, out, start, budget = sys.argv[1:6]
work = Path(work)
steps = []
for line in Path(steps_tsv).read_text().splitlines():
    name, status, rc, seconds = line.split("\t")
    log = work / f"{name}.out"
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    steps.append({"step": name, "status": status, "exit_code": int(rc),
                  "seconds": int(seconds), "output_tail": tail})
results = {}
for key, name in (("rcc", "rcc.json"), ("diffc", "diffc.json"), ("filter", "filter.json")):
    path = work / name
    if path.exists():
        try:
            results[key] = json.loads(path.read_text())
        except ValueError as exc:
            results[key] = {"error": f"unreadable {name}: {exc}"}
summary = {"budget_s": int(budget), "elapsed_s": int(time.time()) - int(start),
           "all_ok": all(s["status"] == "ok" for s in steps), "steps": steps,
           "results": results}
Path(out).write_text(json.dumps(summary, indent=1))
print(f"wrote {out}: " + ", ".join(f"{s['step']} {s['status']}" for s in steps))
EOF
rm -rf "$WORK"
