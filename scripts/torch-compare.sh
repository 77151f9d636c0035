#!/usr/bin/env bash
# onerec against the PyTorch reference (benches/reference/onerec_torch.py) at equal
# dims: the `beauty` config on Amazon Beauty (or the quickstart's synthetic world when
# the data directory is absent), training examples/s (batch 256, length buckets) and
# generation users/s (beam 20, top 10, KV cache, trie mask), at 1 and 2 threads,
# A B A B in one run. Prints every figure and the ratios; the load (`uptime`) before
# and after, since the machine may be shared.
# Usage: scripts/torch-compare.sh [DATA_DIR] [OUT]
# Environment: STEPS (30 timed training steps per run), GEN_USERS (1024), THREADS ("1 2"),
#   REPS (2), PARTS ("train generate": either or both), COMPILE=0 (skip torch.compile;
#   COMPILE_TIMEOUT, 900 s, bounds its warm-up), ONEREC_BIN (a prebuilt binary),
#   VENV (runs/torch-venv; torch and numpy are pip-installed into it when missing).
set -euo pipefail
data="${1:-../shared/data/amazon-beauty}"; out="${2:-runs/torch-compare}"
steps="${STEPS:-30}"; gen_users="${GEN_USERS:-1024}"; threads="${THREADS:-1 2}"; reps="${REPS:-2}"
venv="${VENV:-runs/torch-venv}"; ref=benches/reference/onerec_torch.py
bin="${ONEREC_BIN:-target/release/onerec}"
[ -n "${ONEREC_BIN:-}" ] || cargo build --release --locked --quiet
mkdir -p "$out"

if ! "$venv/bin/python" -c 'import torch, numpy' 2>/dev/null; then
  python3 -m venv "$venv"
  # The CPU-only index is not reachable from every machine: fall back to PyPI.
  "$venv/bin/pip" install --quiet torch numpy --index-url https://download.pytorch.org/whl/cpu ||
    "$venv/bin/pip" install --quiet torch numpy
fi
py="$venv/bin/python"

# Data: a prepared dataset and a tokenizer directory (codes.tsv) that both sides read.
if [ -f "$data/sequences.txt.gz" ] && [ -f "$data/item_text_embeddings.safetensors" ]; then
  [ -f "$out/data/histories.safetensors" ] ||
    "$bin" data prepare --sequences "$data/sequences.txt.gz" --out "$out/data"
  [ -f "$out/tokenizer/codes.tsv" ] ||
    "$bin" tokenize --embeddings "text=$data/item_text_embeddings.safetensors" --levels 3 --codebook-size 256 \
      --align-with "$out/data" --out "$out/tokenizer"
  dataset="Amazon Beauty ($data)"
else
  echo "no $data/sequences.txt.gz: using the quickstart's synthetic world"
  [ -f "$out/qs/tokenizer/codes.tsv" ] || "$bin" quickstart --out "$out/qs" > "$out/qs.log" 2>&1
  ln -sfn qs/data "$out/data"; ln -sfn qs/tokenizer "$out/tokenizer"
  dataset="quickstart synthetic world"
fi
d="$out/data"; tok="$out/tokenizer"
"$py" "$ref" histories --data "$d" --tokenizer "$tok" --users "$gen_users" --out "$out/histories.txt"

sets=(--set train.max_steps=$((steps + 10)) --set train.log_every=10 --set train.eval_every=1000000
  --set train.rank_users=0 --set train.select_metric=\"valid_loss\" --set train.valid_users=64)
plain() { sed 's/\x1b\[[0-9;]*m//g' "$1"; } # the log without colour codes
load() { echo "load: $(uptime | sed 's/.*load average/load average/')"; }

# Ours: examples/s over the log windows after the first 10 steps (harmonic mean = total rate).
ours_train() { # threads rep
  local o="$out/ours-train-t$1-r$2"; rm -rf "$o"
  "$bin" --threads "$1" pretrain --config beauty --data "$d" --tokenizer "$tok" --out "$o" "${sets[@]}" \
    > "$o.log" 2>&1
  plain "$o.log" | grep -o 'ex_per_s="\?[0-9.]*' | tr -dc '0-9.\n' | tail -n +2 |
    awk '{ n++; s += 1 / $1 } END { printf "%.1f\n", n / s }'
}
torch_train() { # threads extra-flags... (a compile that outlasts COMPILE_TIMEOUT prints nan)
  local t="$1"; shift
  timeout "${COMPILE_TIMEOUT:-900}" "$py" "$ref" train --data "$d" --tokenizer "$tok" --threads "$t" --steps "$steps" "$@" |
    "$py" -c 'import json,sys; print("%.1f" % json.loads(sys.stdin.read())["ex_per_s"])' 2>/dev/null || echo nan
}
ours_gen() { # threads
  local o="$out/ours-gen.jsonl" t0 t1
  t0=$(date +%s.%N)
  "$bin" --threads "$1" generate --checkpoint "$out/ours-train-t1-r1" --histories "$out/histories.txt" --beam 20 \
    --top 10 --out "$o" > "$out/ours-gen.log" 2>&1
  t1=$(date +%s.%N)
  # The whole command (start-up, checkpoint load, writing) goes to a side file; the
  # figure compared is the decode (the log's "generating" to "wrote ... in S"), as torch's.
  awk -v a="$t0" -v b="$t1" -v n="$gen_users" -v t="$1" 'BEGIN { printf "%s\t%.1f\n", t, n / (b - a) }' >> "$out/ours-gen-whole-command.tsv"
  plain "$out/ours-gen.log" | grep -o "($gen_users users) in [0-9.]*s" | tr -dc '0-9.\n ' |
    awk -v n="$gen_users" '{ printf "%.1f\n", n / $2 }'
}
torch_gen() { # threads [--cross-per-user]
  "$py" "$ref" generate --data "$d" --tokenizer "$tok" --threads "$1" --users "$gen_users" ${2:-} |
    "$py" -c 'import json,sys; print("%.1f" % json.loads(sys.stdin.read())["users_per_s"])'
}

echo "dataset: $dataset; torch $("$py" -c 'import torch; print(torch.__version__)'); $("$bin" --version)"
echo "params: torch $("$py" "$ref" params --data "$d" --tokenizer "$tok" | grep -o '"params": [0-9]*' | tr -dc 0-9)"
load
parts="${PARTS:-train generate}"
results="$out/results.tsv"; : > "$results"
[[ " $parts " == *" train "* ]] && for t in $threads; do
  for r in $(seq "$reps"); do
    a=$(ours_train "$t" "$r"); echo -e "train\t$t\tours\t$a" | tee -a "$results"
    b=$(torch_train "$t"); echo -e "train\t$t\teager\t$b" | tee -a "$results"
    if [ "${COMPILE:-1}" = 1 ]; then
      c=$(torch_train "$t" --compile --warmup 15); echo -e "train\t$t\tcompiled\t$c" | tee -a "$results"
    fi
    load
  done
done
[ ! -f "$out/ours-train-t1-r1.log" ] || plain "$out/ours-train-t1-r1.log" | grep -o 'params=[0-9]*' | head -1 | sed 's/^/params: ours /'
[[ " $parts " == *" generate "* ]] && for t in $threads; do
  for r in $(seq "$reps"); do
    a=$(ours_gen "$t"); echo -e "generate\t$t\tours\t$a" | tee -a "$results"
    b=$(torch_gen "$t"); echo -e "generate\t$t\teager\t$b" | tee -a "$results"
    # The same search with cross K/V kept per user (onerec's layout since 2026-12-03).
    c=$(torch_gen "$t" --cross-per-user); echo -e "generate\t$t\teager-per-user-kv\t$c" | tee -a "$results"
  done
  load
done
echo "== means (examples/s or users/s) and ours / torch =="
awk -F'\t' '{ k = $1 "\t" $2; s[k "\t" $3] += $4; n[k "\t" $3]++; keys[k] = 1 }
  END { for (k in keys) { o = s[k "\tours"] / n[k "\tours"]; line = k "\tours " sprintf("%.1f", o)
          for (m in s) { split(m, p, "\t"); if (p[1] "\t" p[2] == k && p[3] != "ours") {
            v = s[m] / n[m]; line = line "\t" p[3] " " sprintf("%.1f", v) " (ours/" p[3] " " sprintf("%.2f", o / v) "x)" } }
          print line } }' "$results" | sort
