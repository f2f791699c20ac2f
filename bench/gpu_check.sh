#!/usr/bin/env bash
# One command that proves fastvid's GPU path on a machine with an NVIDIA GPU (issue 12).
#
#   bench/gpu_check.sh                    # under 8 minutes; writes bench/results/gpu.txt
#   PYTHON=/path/to/venv/bin/python bench/gpu_check.sh
#
# It needs fastvid installed with its CUDA extra (pip install -e ".[cuda,test]"; add
# torch, jax[cuda12] or tensorflow[and-cuda] for the DLPack checks of those). Each
# check prints PASS/FAIL/SKIP with what it measured (bench/gpu_check.py says what each
# one does); the report goes to the terminal and to $FASTVID_GPU_CHECK_OUT (default
# bench/results/gpu.txt), and the exit status is 1 when a check failed.
#
# Without a usable GPU (no CuPy, no driver, no device, CUDA_VISIBLE_DEVICES="", or a
# CuPy that cannot compile a kernel) it writes nothing, says why in its last line and
# exits 0 within seconds, so CI can run it on any machine.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${FASTVID_GPU_CHECK_OUT:-bench/results/gpu.txt}
LIMIT=${FASTVID_GPU_CHECK_LIMIT:-470}  # seconds for all the checks: 8 minutes with the probe

# fastvid's own fork-safe probe (a subprocess compiles and launches one kernel)
reason=$(timeout 200 "$PY" -c '
from fastvid.ops.device import cuda_unavailable
print(cuda_unavailable() or "")' 2>/dev/null | tail -n 1)
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
    reason="the probe did not run ($PY -c 'import fastvid' exit status $status)"
fi
if [ -n "$reason" ]; then
    echo "gpu_check: no GPU: $reason; nothing checked"
    exit 0
fi

mkdir -p "$(dirname "$OUT")"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
timeout --signal=TERM --kill-after=10 "$LIMIT" "$PY" bench/gpu_check.py 2>&1 | tee "$tmp"
rc=${PIPESTATUS[0]}
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "gpu_check: stopped after ${LIMIT} s (FASTVID_GPU_CHECK_LIMIT); the report is partial" \
        | tee -a "$tmp"
fi
cp "$tmp" "$OUT"
echo "gpu_check: report written to $OUT"
exit "$rc"
