#!/usr/bin/env bash
# Amazon Beauty alignment, after scripts/beauty.sh: reward model -> iterative DPO
# (the [align] section of configs/beauty.toml) -> test eval of the pretrained and the
# aligned model on the same users (Recall/NDCG and the reward model's score of each
# user's best generated 4-item session). Writes OUT/align-results.{json,md}.
# Usage: scripts/beauty-align.sh [OUT] [--set key=value ...]   (OUT as given to beauty.sh)
set -euo pipefail
out="${1:-runs/beauty}"
shift 1 || true
sets=()
for kv in "$@"; do sets+=(--set "$kv"); done
bin="${ONEREC_BIN:-target/release/onerec}"
[ -n "${ONEREC_BIN:-}" ] || cargo build --release --quiet
users="${EVAL_USERS:-4000}"
start=$(date +%s)
[ -f "$out/reward/reward.json" ] || $bin reward --config beauty --data "$out/data" --tokenizer "$out/tok" --out "$out/reward" "${sets[@]}"
$bin align --config beauty --checkpoint "$out/pre" --reward "$out/reward" --data "$out/data" --out "$out/aligned" "${sets[@]}"
for m in pre aligned; do
  $bin eval --checkpoint "$out/$m" --data "$out/data" --split test --beam 20 --session-len 4 --reward "$out/reward" \
    --max-users "$users" --json --out "$out/align-eval-$m.json" > /dev/null
done
end=$(date +%s)
python3 - "$out" $((end - start)) "$users" <<'PY'
import json, sys
out, secs, users = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = ["| model | RM reward (best 4-item session) | Recall@10 | NDCG@10 | coverage |", "| --- | --- | --- | --- | --- |"]
res = {}
for m, name in [("pre", "pretrained"), ("aligned", "iterative DPO + NTP")]:
    r = json.load(open(f"{out}/align-eval-{m}.json")); res[m] = r
    rows.append(f"| {name} | {r['rm_reward']:.4f} | {r['recall@10']:.4f} | {r['ndcg@10']:.4f} | {r['coverage']:.4f} |")
json.dump(res, open(f"{out}/align-results.json", "w"), indent=2)
open(f"{out}/align-results.md", "w").write("\n".join(rows) + f"\n\ntest split, {users} evenly spaced users; wall time {secs} s\n")
print("\n".join(rows)); print(f"wall time {secs} s")
PY
