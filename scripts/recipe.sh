#!/usr/bin/env bash
# The whole recipe on one Amazon 5-core data directory (or any directory with
# sequences.txt.gz and either item_text_embeddings.safetensors or items.tsv.gz):
# prepare -> embed (only when the directory ships no embeddings; fetches the MiniLM model
# first) -> tokenize -> pretrain -> eval on validation and test, every setting from one
# config (`configs/beauty.toml` by default). A thin wrapper over `onerec recipe`.
# Usage: scripts/recipe.sh DATA_DIR OUT [key=value ...]   (each key=value -> --set)
# Environment: CONFIG (beauty), RESUME=1 (continue a killed run), EVAL_ONLY=1,
#   ONEREC_BIN (a prebuilt binary: lets a long run survive rebuilds of target/),
#   RANKS=N (N > 1: `mpirun -np N`, 1 thread per rank, the `mpi` build in target/mpi;
#   docs/distributed.md).
set -euo pipefail
data="${1:?usage: scripts/recipe.sh DATA_DIR OUT [key=value ...]}"; out="${2:?OUT missing}"
shift 2
sets=()
for kv in "$@"; do sets+=(--set "$kv"); done
flags=()
[ "${RESUME:-0}" = 1 ] && flags+=(--resume)
[ "${EVAL_ONLY:-0}" = 1 ] && flags+=(--eval-only)
ranks="${RANKS:-1}"
launch=()
if [ "$ranks" -gt 1 ]; then
  bin="${ONEREC_BIN:-target/mpi/release/onerec}"
  [ -n "${ONEREC_BIN:-}" ] || cargo build --release --quiet --features mpi --target-dir target/mpi
  launch=(mpirun -np "$ranks" --bind-to none -x RAYON_NUM_THREADS=1)
  flags+=(--threads 1)
else
  bin="${ONEREC_BIN:-target/release/onerec}"
  [ -n "${ONEREC_BIN:-}" ] || cargo build --release --quiet
fi
if [ ! -f "$data/item_text_embeddings.safetensors" ] && [ ! -f models/all-MiniLM-L6-v2/tokenizer.json ]; then
  "$(dirname "$0")/fetch-minilm.sh" models/all-MiniLM-L6-v2
fi
exec "${launch[@]}" "$bin" recipe "$data" --out "$out" --config "${CONFIG:-beauty}" "${sets[@]}" "${flags[@]}"
