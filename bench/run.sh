#!/usr/bin/env bash
# Reproduce the benchmark figures quoted in bench/README.md and the project README.
#
#   bench/run.sh            # full run: 5 repeats per measurement (quiet machine, ~15-25 min)
#   bench/run.sh --quick    # smoke run: small dataset, 1 repeat, no verdicts (not figures)
#   PYTHON=/work/benchvenv/bin/python bench/run.sh   # an environment with torchcodec/decord
#
# Extra arguments go to every `fastvid bench` call. The dataset is cut from real footage
# (--footage DIR, $FASTVID_BENCH_FOOTAGE, else ../shared/videos beside the checkout;
# synthetic videos when there is none, and the report says so) and cached in
# $FASTVID_BENCH_DATA (default ~/.cache/fastvid/bench), so only the first run encodes.
# Each suite writes bench/results/<suite>.txt (the table, as printed) and <suite>.json;
# --quick runs write to bench/results/quick/ instead, so they never replace figures.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/results
for arg in "$@"; do [ "$arg" = "--quick" ] && OUT=bench/results/quick; done
mkdir -p "$OUT"
PY=${PYTHON:-python3}
SUITES=${SUITES:-decode process keras tfrecord}
status=0
read -r load1 _ < /proc/loadavg || load1="?"
echo "== load average (1 min) before the run: $load1 on $(nproc) cores" >&2
for suite in $SUITES; do
    echo "== fastvid bench --suite $suite $*" >&2
    "$PY" -m fastvid bench --suite "$suite" \
        --json "$OUT/$suite.json" --text "$OUT/$suite.txt" "$@" || status=1
done
exit $status
