#!/usr/bin/env bash
# Reproduce the benchmark figures quoted in bench/README.md and the project README.
#
#   bench/run.sh            # full run: 5 repeats per measurement (quiet machine, ~10-20 min)
#   bench/run.sh --quick    # smoke run: small dataset, 1 repeat (a minute; not figures)
#
# Extra arguments go to every `fastvid bench` call. The generated videos are cached in
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
for suite in $SUITES; do
    echo "== fastvid bench --suite $suite $*" >&2
    "$PY" -m fastvid bench --suite "$suite" \
        --json "$OUT/$suite.json" --text "$OUT/$suite.txt" "$@" || status=1
done
exit $status
