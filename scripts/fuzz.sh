#!/usr/bin/env bash
# Long fuzz run of every parser (tests/reliability.rs `fuzz_*`): ITERS inputs per target
# (default 1,000,000), mutated from the seeds in fuzz/corpus/<target>/. Prints and appends
# one line per target (inputs, accepted, clean errors, crashes, rate) to REPORT.
# Usage: scripts/fuzz.sh [ITERS] [REPORT] [TARGET]   (crashing inputs are saved in $TMPDIR)
# TARGET: only the test `reliability::fuzz_TARGET` (e.g. serve_body); default: all of them.
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS="${1:-1000000}"
REPORT="${2:-runs/fuzz-report.txt}"
TARGET="${3:-}"
mkdir -p "$(dirname "$REPORT")"
echo "# $(date -u +%FT%TZ) ITERS=$ITERS seed=${ONEREC_FUZZ_SEED:-19}" >> "$REPORT"
ONEREC_FUZZ_ITERS="$ITERS" ONEREC_FUZZ_REPORT="$(realpath "$REPORT")" RAYON_NUM_THREADS=1 \
  cargo test --test it "reliability::fuzz_$TARGET" -- --test-threads "${FUZZ_JOBS:-1}"
cat "$REPORT"
