#!/usr/bin/env bash
# Amazon Beauty: prepare -> tokenize -> pretrain -> eval (test split, full ranking over
# all 12,101 items), with the `beauty` config. Writes OUT/results.json and OUT/results.md.
# Usage: scripts/beauty.sh [DATA_DIR] [OUT] [key=value ...]   (each key=value -> pretrain --set)
# Environment: SEED (42), METHOD (balanced-rq-kmeans | rq-kmeans | rq-vae), ALIGN (1, the
# default: tokenizer behavioural alignment on the training histories; 0 turns it off), EVAL_USERS (all test users by default),
# RESUME=1 (continue a killed run from OUT/pre/last; prepare and tokenize rerun and give the
# same bytes). Besides the test split, all validation users are evaluated (OUT/valid.json):
# recipes are compared on that, never on test.
set -euo pipefail
data="${1:-../shared/data/amazon-beauty}"; out="${2:-runs/beauty}"
shift 2 || shift $# || true
sets=()
for kv in "$@"; do sets+=(--set "$kv"); done
seed="${SEED:-42}"
method="${METHOD:-balanced-rq-kmeans}"
tok_extra=()
[ "${ALIGN:-1}" = 1 ] && tok_extra+=(--align-with "$out/data")
eval_extra=()
[ -n "${EVAL_USERS:-}" ] && eval_extra+=(--max-users "$EVAL_USERS")
resume=()
[ "${RESUME:-0}" = 1 ] && resume+=(--resume)
# ONEREC_BIN: a prebuilt binary (lets a long run survive rebuilds of target/).
bin="${ONEREC_BIN:-target/release/onerec}"
start=$(date +%s)
[ -n "${ONEREC_BIN:-}" ] || cargo build --release --quiet
mkdir -p "$out"
$bin data prepare --sequences "$data/sequences.txt.gz" --out "$out/data"
$bin data stats "$out/data" --json > "$out/stats.json"
$bin tokenize --embeddings "text=$data/item_text_embeddings.safetensors" --method "$method" \
  --levels 3 --codebook-size 256 --seed "$seed" --out "$out/tok" --report "${tok_extra[@]}"
$bin pretrain --config beauty --data "$out/data" --tokenizer "$out/tok" --out "$out/pre" \
  --set "seed=$seed" "${sets[@]}" "${resume[@]}"
$bin eval --checkpoint "$out/pre" --data "$out/data" --split valid --beam 20 --session-len 0 \
  --json --out "$out/valid.json" "${eval_extra[@]}"
$bin eval --checkpoint "$out/pre" --data "$out/data" --split test --beam 20 --session-len 0 \
  --json --out "$out/results.json" "${eval_extra[@]}"
end=$(date +%s)
python3 - "$out" $((end - start)) <<'PY'
import json, sys
out, secs = sys.argv[1], int(sys.argv[2])
r = json.load(open(f"{out}/results.json"))
v = json.load(open(f"{out}/valid.json"))
rows = ["| model | Recall@5 | NDCG@5 | Recall@10 | NDCG@10 |", "| --- | --- | --- | --- | --- |",
        f"| onerec (this run) | {r['recall@5']:.4f} | {r['ndcg@5']:.4f} | {r['recall@10']:.4f} | {r['ndcg@10']:.4f} |",
        "| TIGER (published) | 0.0454 | 0.0321 | 0.0648 | 0.0384 |",
        f"| onerec (this run), validation split | {v['recall@5']:.4f} | {v['ndcg@5']:.4f} | {v['recall@10']:.4f} | {v['ndcg@10']:.4f} |"]
open(f"{out}/results.md", "w").write("\n".join(rows) + f"\n\nwall time {secs} s\n")
print("\n".join(rows)); print(f"wall time {secs} s")
PY
