#!/usr/bin/env bash
# The GPU path checked in one short run on a machine with one NVIDIA GPU: prints ONE JSON summary.
#
#   bash bench/gpu_check.sh            # from the repository root (or anywhere: it finds the root)
#
# What it runs, each step time-boxed (`timeout` / subprocess limits; a failing step is reported in the
# JSON, never fatal): the pytest subset marked `cuda`, bench/step_time.py --device cuda for the quick and
# standard presets (DP/non-DP step-time ratios, peak GPU memory, DDIM images per second), one
# standard-preset MNIST run at epsilon 10 cut to its time box, and its downstream accuracy
# (dpsad-core evaluate). See bench/gpu_check.py.
#
# Time: at most GPU_CHECK_BUDGET seconds in all (default 480 = 8 minutes), set-up included.
# Set-up: when .venv is not ready it runs `make .venv/.test TORCH_SPEC=torch` and nothing else: pip
# picks its own CUDA build of torch from the package registry (the only network it uses). A .venv built
# with the CPU pin is reported as "no CUDA" with the command that rebuilds it.
# Without an NVIDIA GPU it prints {"cuda": false, ...} and exits 0. Exit 1: a step failed (see the JSON).
# The MNIST IDX files are read from GPU_CHECK_MNIST (default ../shared/data/mnist); absent: that step is skipped.
set -u
cd "$(dirname "$0")/.." || exit 1

BUDGET=${GPU_CHECK_BUDGET:-480}
PYTHON=${GPU_CHECK_PYTHON:-.venv/bin/python}
MNIST=${GPU_CHECK_MNIST:-../shared/data/mnist}
START=$(date +%s)
MARGIN=15   # seconds kept for printing the summary after the last step

json_string() {  # a shell string as a JSON string (no python needed before the set-up)
  local text=${1//\\/\\\\}
  text=${text//\"/\\\"}
  text=${text//$'\n'/ }
  printf '"%s"' "${text//$'\t'/ }"
}

no_cuda() {
  printf '{"check": "dpsad gpu_check", "cuda": false, "reason": %s, "status": "no CUDA: nothing was measured"}\n' \
    "$(json_string "$1")"
  exit 0
}

if ! command -v nvidia-smi >/dev/null 2>&1; then
  no_cuda "no NVIDIA driver on this machine (nvidia-smi not found)"
fi
if ! GPUS=$(timeout 20 nvidia-smi -L 2>&1) || [ -z "$GPUS" ]; then
  no_cuda "nvidia-smi found no usable GPU: ${GPUS:-no output}"
fi

SETUP_STATUS="ready"
SETUP_SECONDS=0
if [ -z "${GPU_CHECK_PYTHON:-}" ] && [ ! -f .venv/.test ]; then
  LOG=$(mktemp)
  if timeout $((BUDGET / 2)) make .venv/.test TORCH_SPEC=torch >"$LOG" 2>&1; then
    SETUP_STATUS="built .venv with make .venv/.test TORCH_SPEC=torch"
  else
    SETUP_STATUS="make .venv/.test TORCH_SPEC=torch failed or timed out: $(tail -c 600 "$LOG")"
  fi
  rm -f "$LOG"
  SETUP_SECONDS=$(( $(date +%s) - START ))
fi
SETUP=$(printf '{"status": %s, "seconds": %d, "gpus": %s}' "$(json_string "$SETUP_STATUS")" "$SETUP_SECONDS" \
  "$(json_string "$GPUS")")
if [ ! -x "$PYTHON" ]; then
  printf '{"check": "dpsad gpu_check", "cuda": null, "setup": %s, "status": "no python at %s: set-up failed"}\n' \
    "$SETUP" "$PYTHON"
  exit 1
fi

LEFT=$(( BUDGET - ($(date +%s) - START) - MARGIN ))
if [ "$LEFT" -lt 60 ]; then
  printf '{"check": "dpsad gpu_check", "cuda": null, "setup": %s, "status": "set-up used the time box"}\n' "$SETUP"
  exit 1
fi
OUT=$(mktemp)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
timeout --kill-after=5 $((LEFT + MARGIN - 5)) "$PYTHON" bench/gpu_check.py --budget "$((LEFT - 10))" \
  --mnist "$MNIST" --setup-json "$SETUP" >"$OUT" 2>"$OUT.err"
CODE=$?
if grep -q '^{' "$OUT"; then
  grep '^{' "$OUT" | tail -n 1
else
  printf '{"check": "dpsad gpu_check", "cuda": null, "setup": %s, "status": %s}\n' "$SETUP" \
    "$(json_string "bench/gpu_check.py ended with code $CODE and no summary: $(tail -c 800 "$OUT.err")")"
  CODE=1
fi
rm -f "$OUT" "$OUT.err"
exit "$CODE"
