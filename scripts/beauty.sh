#!/usr/bin/env bash
# Amazon Beauty: prepare -> tokenize -> pretrain -> eval (full ranking over all 12,101
# items), with the `beauty` config. Writes OUT/results.json (test), OUT/valid.json
# (validation), OUT/results-with-history.json (test, history items allowed) and
# OUT/results.md.
# Usage: scripts/beauty.sh [DATA_DIR] [OUT] [key=value ...]   (each key=value -> pretrain --set)
# Environment:
#   SEED (42); METHOD (balanced-rq-kmeans | rq-kmeans | rq-vae);
#   ALIGN (1, the default: tokenizer behavioural alignment on the training histories; 0 off);
#   EXCLUDE_HISTORY (1, the default: never rank an item the user already has -- these files
#     hold no repeat purchases, and validation NDCG@10 rose 0.0495 -> 0.0543 with it; 0 off);
#   BEAM (ranking beam width, 20); EVAL_USERS (all users by default);
#   VALID (1, the default: also evaluate all validation users into OUT/valid.json -- recipes
#     are compared on that, never on test; 0 skips that pass, e.g. for ablations);
#   RESUME=1 (continue a killed run from OUT/pre/last; prepare and tokenize rerun and give
#     the same bytes); EVAL_ONLY=1 (only the evaluations, on an existing OUT);
#   ONEREC_BIN (a prebuilt binary: lets a long run survive rebuilds of target/).
set -euo pipefail
data="${1:-../shared/data/amazon-beauty}"; out="${2:-runs/beauty}"
shift 2 || shift $# || true
sets=()
for kv in "$@"; do sets+=(--set "$kv"); done
seed="${SEED:-42}"
method="${METHOD:-balanced-rq-kmeans}"
exclude="${EXCLUDE_HISTORY:-1}"
tok_extra=()
[ "${ALIGN:-1}" = 1 ] && tok_extra+=(--align-with "$out/data")
eval_extra=(--beam "${BEAM:-20}" --session-len 0 --json)
[ -n "${EVAL_USERS:-}" ] && eval_extra+=(--max-users "$EVAL_USERS")
protocol=()
[ "$exclude" = 1 ] && protocol+=(--exclude-history)
resume=()
[ "${RESUME:-0}" = 1 ] && resume+=(--resume)
bin="${ONEREC_BIN:-target/release/onerec}"
start=$(date +%s)
[ -n "${ONEREC_BIN:-}" ] || cargo build --release --quiet
mkdir -p "$out"
if [ "${EVAL_ONLY:-0}" != 1 ]; then
  $bin data prepare --sequences "$data/sequences.txt.gz" --out "$out/data"
  $bin data stats "$out/data" --json > "$out/stats.json"
  $bin tokenize --embeddings "text=$data/item_text_embeddings.safetensors" --method "$method" \
    --levels 3 --codebook-size 256 --seed "$seed" --out "$out/tok" --report "${tok_extra[@]}"
  $bin pretrain --config beauty --data "$out/data" --tokenizer "$out/tok" --out "$out/pre" \
    --set "seed=$seed" "${sets[@]}" "${resume[@]}"
fi
# evaluate SPLIT NAME [flags]: writes OUT/NAME; results.md lists only what this run wrote.
written=()
evaluate() {
  $bin eval --checkpoint "$out/pre" --data "$out/data" "${eval_extra[@]}" --split "$1" --out "$out/$2" "${@:3}"
  written+=("$1:$2")
}
[ "${VALID:-1}" = 1 ] && evaluate valid valid.json "${protocol[@]}"
evaluate test results.json "${protocol[@]}"
# Published rows do not say whether they filter history items, so also report test without.
[ "$exclude" = 1 ] && evaluate test results-with-history.json
end=$(date +%s)
python3 - "$out" $((end - start)) "${EVAL_ONLY:-0}" "${written[@]}" <<'PY'
import json, sys
out, secs, eval_only, written = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4:]
rows = ["| model | Recall@5 | NDCG@5 | Recall@10 | NDCG@10 |", "| --- | --- | --- | --- | --- |"]
def add(split, name):
    p = f"{out}/{name}"
    r = json.load(open(p))
    # The protocol is read from the eval's own run record, never assumed.
    args = json.load(open(p + ".run.json"))["args"]
    protocol = "history items excluded" if args.get("exclude_history") else "history items allowed"
    users = f", {args['max_users']} users" if args.get("max_users") else ""
    rows.append(f"| onerec (this run), {split}, {protocol}, beam {args['beam']}{users} | {r['recall@5']:.4f} | "
                f"{r['ndcg@5']:.4f} | {r['recall@10']:.4f} | {r['ndcg@10']:.4f} |")
split_name = [w.split(":", 1) for w in written]
for split, name in split_name:
    if split == "test": add(split, name)
rows.append("| TIGER (published) | 0.0454 | 0.0321 | 0.0648 | 0.0384 |")
for split, name in split_name:
    if split == "valid": add("validation", name)
what = "evaluation wall time" if eval_only else "wall time"
open(f"{out}/results.md", "w").write("\n".join(rows) + f"\n\n{what} {secs} s\n")
print("\n".join(rows)); print(f"{what} {secs} s")
PY
