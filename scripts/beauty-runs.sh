#!/usr/bin/env bash
# Amazon Beauty seeds and ablations (issue "Amazon Beauty benchmark"): runs scripts/beauty.sh
# once per (variant, seed) and writes OUT/table.md with mean ± std over seeds of the test
# Recall/NDCG@5/10 and each run's wall time. A finished run (test.json present) is
# skipped, so a killed batch resumes where it stopped.
# Usage: scripts/beauty-runs.sh [DATA_DIR] [OUT] [VARIANTS] [SEEDS...]
#   VARIANTS: comma list of main, rq-kmeans, rq-vae, noalign, dense (default: all);
#   main = the README recipe (balanced RQ-KMeans with behavioural alignment), noalign = ALIGN=0
#   Extra pretrain overrides for every run: BEAUTY_SET="train.epochs=2 ..." (smoke tests).
# Each run takes ~1.3-1.5 h on one core (see README); 3 seeds x 5 variants is a GPU-day job
# on this CPU, so pick variants. The environment of scripts/beauty.sh (EXCLUDE_HISTORY, VALID,
# ONEREC_BIN, ...) passes through.
set -euo pipefail
data="${1:-../shared/data/amazon-beauty}"; out="${2:-runs/beauty-runs}"
variants="${3:-main,rq-kmeans,rq-vae,noalign,dense}"; shift 3 || shift $# || true
seeds=("${@:-42 43 44}"); seeds=(${seeds[@]})
here="$(dirname "$0")"
extra=(${BEAUTY_SET:-})
[ -n "${ONEREC_BIN:-}" ] || { cargo build --release --quiet; export ONEREC_BIN=target/release/onerec; }
mkdir -p "$out"
for v in ${variants//,/ }; do
  for s in "${seeds[@]}"; do
    dir="$out/$v-$s"
    [ -f "$dir/test.json" ] && { echo "skip $dir (done)"; continue; }
    rm -rf "$dir"
    case "$v" in
      main) SEED=$s "$here/beauty.sh" "$data" "$dir" "${extra[@]}" ;;
      rq-kmeans|rq-vae) SEED=$s METHOD=$v "$here/beauty.sh" "$data" "$dir" "${extra[@]}" ;;
      noalign) SEED=$s ALIGN=0 "$here/beauty.sh" "$data" "$dir" "${extra[@]}" ;;
      # Dense decoder FFN with the MoE's active hidden size (top_k x expert_hidden + shared =
      # 768); model.ffn_hidden also sizes the encoder FFN, so its encoder is 768 wide, not 512.
      dense) SEED=$s "$here/beauty.sh" "$data" "$dir" model.moe.experts=0 model.ffn_hidden=768 "${extra[@]}" ;;
      *) echo "unknown variant $v (main, rq-kmeans, rq-vae, noalign, dense)" >&2; exit 2 ;;
    esac > "$dir.log" 2>&1 || { echo "run $dir failed; see $dir.log" >&2; exit 1; }
  done
done
python3 - "$out" "$variants" "${seeds[@]}" <<'PY'
import json, os, re, statistics as st, sys
out, variants, seeds = sys.argv[1], sys.argv[2].split(","), sys.argv[3:]
def ms(v): return f"{st.mean(v):.4f} ± {st.pstdev(v):.4f}" if len(v) > 1 else f"{v[0]:.4f}"
keys = ("recall@5", "ndcg@5", "recall@10", "ndcg@10", "recall@20", "ndcg@20")
lines = [f"seeds: {' '.join(seeds)}; Amazon Beauty test split, all users; mean ± std over seeds", "",
         "| variant | protocol | " + " | ".join(k.replace("recall", "Recall").replace("ndcg", "NDCG") for k in keys)
         + " | wall s (mean) |", "| --- " * (len(keys) + 3) + "|"]
for v in variants:
    walls = []
    for s in seeds:
        m = re.search(r"^wall time (\d+) s", open(f"{out}/{v}-{s}/results.md").read(), re.M)
        if m: walls.append(int(m.group(1)))
    wall = f"{st.mean(walls):.0f}" if walls else "n/a"
    for name in ("test.json", "test-history-allowed.json", "test-history-excluded.json"):
        paths = [f"{out}/{v}-{s}/{name}" for s in seeds]
        if not all(os.path.exists(p) for p in paths): continue
        rs = [json.load(open(p)) for p in paths]
        # The protocol as recorded by each eval's own run record, never assumed from the name.
        ex = {json.load(open(p + ".run.json"))["args"]["exclude_history"] for p in paths}
        protocol = "history excluded" if ex == {True} else "history allowed" if ex == {False} else "mixed"
        lines.append(f"| {v} | {protocol} | " + " | ".join(ms([r[k] for r in rs]) for k in keys) + f" | {wall} |")
open(f"{out}/table.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
