#!/usr/bin/env bash
# CE-SASRec baseline on one Amazon 5-core directory: prepare (if needed) -> onerec baseline
# sasrec (built-in `sasrec` config) -> onerec eval of best/ on valid and test, history
# excluded and allowed, K = 5,10,20. Writes OUT/sasrec-s$SEED/{valid,test}-{excl,incl}.json.
# Usage: scripts/sasrec.sh DATA_DIR OUT [key=value ...]   (each key=value -> --set)
# Environment: SEED (42); RESUME=1 (continue OUT/sasrec-s$SEED); EVAL_ONLY=1;
#   ONEREC_BIN (a prebuilt binary: lets a long run survive rebuilds of target/).
set -euo pipefail
data="$1"; out="$2"
shift 2
sets=()
for kv in "$@"; do sets+=(--set "$kv"); done
seed="${SEED:-42}"
bin="${ONEREC_BIN:-target/release/onerec}"
run="$out/sasrec-s$seed"
mkdir -p "$out"
[ -f "$out/data/dataset.json" ] || $bin data prepare --sequences "$data/sequences.txt.gz" --out "$out/data"
start=$(date +%s)
if [ "${EVAL_ONLY:-0}" != 1 ]; then
  resume=()
  [ "${RESUME:-0}" = 1 ] && resume+=(--resume)
  $bin baseline sasrec --data "$out/data" --out "$run" --seed "$seed" "${resume[@]}" "${sets[@]}"
  echo "train wall seconds: $(( $(date +%s) - start ))" > "$run/wall.txt"
fi
for split in valid test; do
  $bin eval --checkpoint "$run" --data "$out/data" --split "$split" --json --exclude-history > "$run/$split-excl.json"
  $bin eval --checkpoint "$run" --data "$out/data" --split "$split" --json > "$run/$split-incl.json"
done
cat "$run"/*.json
