#!/usr/bin/env bash
# The alignment proof on the synthetic world: quickstart (tiny config) for several seeds,
# plus two ablations (lambda = 0: DPO only; one round: no iteration). Writes
# OUT/proof.md with mean and spread of the before/after numbers.
# Usage: scripts/align-proof.sh [OUT] [SEEDS...]
set -euo pipefail
out="${1:-runs/align-proof}"; shift || true
seeds=("${@:-1 2 3}")
seeds=(${seeds[@]})
bin=target/release/onerec
cargo build --release --quiet
mkdir -p "$out"
for seed in "${seeds[@]}"; do
  "$bin" -q quickstart --out "$out/full-$seed" --seed "$seed"
  "$bin" -q quickstart --out "$out/lambda0-$seed" --seed "$seed" --set align.lambda=0
  "$bin" -q quickstart --out "$out/single-$seed" --seed "$seed" --set align.iterations=1
done
python3 - "$out" "${seeds[@]}" <<'PY'
import json, statistics as st, sys
out, seeds = sys.argv[1], sys.argv[2:]
rows = []
def ms(v): return f"{st.mean(v):.4f} ± {st.pstdev(v):.4f}"
for variant, label in [("full", "iterative DPO + NTP (T=2, lambda=1)"), ("lambda0", "DPO only (lambda=0)"), ("single", "one round (T=1)")]:
    s = [json.load(open(f"{out}/{variant}-{x}/summary.json")) for x in seeds]
    if variant == "full":
        rows.append(("pretrained (no alignment)", [r["pretrain"] for r in s]))
    rows.append((label, [r["aligned"] for r in s]))
lines = [f"seeds: {' '.join(seeds)}; test split, all users; mean ± std over seeds", "",
         "| model | true reward | RM reward | Recall@10 | NDCG@10 |", "| --- | --- | --- | --- | --- |"]
for label, rs in rows:
    lines.append(f"| {label} | {ms([r['true_reward'] for r in rs])} | {ms([r['rm_reward'] for r in rs])} | {ms([r['recall@10'] for r in rs])} | {ms([r['ndcg@10'] for r in rs])} |")
open(f"{out}/proof.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
