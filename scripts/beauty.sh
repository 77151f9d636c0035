#!/usr/bin/env bash
# Amazon Beauty with the `beauty` recipe: scripts/recipe.sh plus the ablation switches
# that scripts/beauty-runs.sh uses. Everything else is in configs/beauty.toml.
# Writes OUT/valid.json, OUT/test.json, OUT/test-history-allowed.json, OUT/results.md.
# Usage: scripts/beauty.sh [DATA_DIR] [OUT] [key=value ...]   (each key=value -> --set)
# Environment (each one a config key; the same as writing key=value):
#   SEED -> seed; METHOD -> tokenizer.method; ALIGN=0 -> tokenizer.align=false;
#   BEAM -> eval.beam; EVAL_USERS -> eval.max_users; EXCLUDE_HISTORY=0 -> eval.exclude_history=false;
#   VALID=0 -> eval.validation=false; RESUME=1, EVAL_ONLY=1, ONEREC_BIN: see scripts/recipe.sh.
set -euo pipefail
data="${1:-../shared/data/amazon-beauty}"; out="${2:-runs/beauty}"
shift 2 || shift $# || true
sets=()
[ -n "${SEED:-}" ] && sets+=("seed=$SEED")
[ -n "${METHOD:-}" ] && sets+=("tokenizer.method=\"$METHOD\"")
[ "${ALIGN:-1}" = 0 ] && sets+=(tokenizer.align=false)
[ -n "${BEAM:-}" ] && sets+=("eval.beam=$BEAM")
[ -n "${EVAL_USERS:-}" ] && sets+=("eval.max_users=$EVAL_USERS")
[ "${EXCLUDE_HISTORY:-1}" = 0 ] && sets+=(eval.exclude_history=false)
[ "${VALID:-1}" = 0 ] && sets+=(eval.validation=false)
exec "$(dirname "$0")/recipe.sh" "$data" "$out" "${sets[@]}" "$@"
