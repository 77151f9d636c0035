#!/usr/bin/env bash
# Serving benchmark (docs/performance.md, "Serving"). In one run, A B A B: offline
# `onerec generate` users/s (decode time, from its log) vs `onerec serve` under
# `onerec serve-bench`: closed-loop throughput at saturation, then an open loop at half
# that rate for latency quantiles; then 10,000 requests with 5% malformed.
# CPU seconds (user + sys) of `generate` and of the server during the saturation phase
# are recorded too: on a shared machine wall-clock rates depend on the other load.
# Usage: scripts/serve-bench.sh CHECKPOINT DATA OUT_DIR
# Env: ONEREC (binary), BEAM (20), K (10), SHARD (offline users, 0/20), REQ (1000),
#      CONC (64 clients), SERVE_FLAGS (extra `onerec serve` flags, e.g. `--threads 1`),
#      PORT (18080), SKIP_MIXED (set: no mixed run).
set -euo pipefail
B="${ONEREC:-target/release/onerec}"
CKPT="$1"; DATA="$2"; OUT="$3"
BEAM="${BEAM:-20}"; K="${K:-10}"; SHARD="${SHARD:-0/20}"; REQ="${REQ:-1000}"; CONC="${CONC:-64}"
PORT="${PORT:-18080}"; ADDR="127.0.0.1:$PORT"
mkdir -p "$OUT"
note() { echo "$*" | tee -a "$OUT/summary.txt"; }
note "# $(date -u +%FT%TZ) beam $BEAM k $K shard $SHARD requests $REQ concurrency $CONC flags '${SERVE_FLAGS:-}'"
note "uptime: $(uptime)"

offline() {
  /usr/bin/time -f "offline generate: %U s user + %S s sys CPU, %e s wall (whole command)" -a -o "$OUT/summary.txt" \
  "$B" generate --checkpoint "$CKPT" --data "$DATA" --split test --beam "$BEAM" --top "$K" \
    --shard "$SHARD" --out "$OUT/gen-$1.jsonl" 2> "$OUT/gen-$1.log"
  # Decode time: from the "generating for N users" line to the "wrote" line.
  python3 - "$OUT/gen-$1.log" <<'PY' | tee -a "$OUT/summary.txt"
import re, sys, datetime
t = {}; n = None
for line in open(sys.argv[1]):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    m = re.match(r"(\S+Z)\s+INFO\s+(generating for (\d+) users|wrote )", line)
    if m:
        ts = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
        if m.group(3): n = int(m.group(3)); t["a"] = ts
        else: t["b"] = ts
s = (t["b"] - t["a"]).total_seconds()
print(f"offline generate: {n} users in {s:.2f}s = {n / s:.1f} users/s")
PY
}

start_server() {
  "$B" serve --checkpoint "$CKPT" --data "$DATA" --split test --addr "$ADDR" ${SERVE_FLAGS:-} 2> "$OUT/serve-$1.log" &
  SERVER=$!
  for _ in $(seq 600); do curl -sf "http://$ADDR/healthz" > /dev/null && return 0; sleep 0.1; done
  echo "server did not start" >&2; exit 1
}

stop_server() {
  curl -s "http://$ADDR/metrics" > "$OUT/metrics-$1.txt"
  kill -TERM "$SERVER"; wait "$SERVER"
}

cpu() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$SERVER/stat"; } # user + sys seconds

bench() { # name, extra serve-bench flags...
  local name="$1"; shift
  "$B" -q serve-bench --addr "$ADDR" --data "$DATA" --beam "$BEAM" --k "$K" --json "$OUT/$name.json" "$@" \
    | sed "s/^/$name: /" | tee -a "$OUT/summary.txt"
}

served() {
  start_server "$1"
  bench "warmup-$1" --concurrency "$CONC" --requests 128 > /dev/null
  local c0; c0=$(cpu)
  bench "saturation-$1" --concurrency "$CONC" --requests "$REQ"
  note "saturation-$1: server CPU $(python3 -c "print(round($(cpu) - $c0, 2))") s (user + sys)"
  local rate
  rate=$(python3 -c "import json; print(json.load(open('$OUT/saturation-$1.json'))['throughput'] / 2)")
  bench "half-$1" --rate "$rate" --concurrency 4096 --requests $((REQ / 2))
  stop_server "$1"
}

offline A1; served B1; offline A2; served B2
[ -n "${SKIP_MIXED:-}" ] && { note "uptime: $(uptime)"; exit 0; }
start_server mixed
bench mixed --concurrency "$CONC" --requests 10000 --malformed 0.05
stop_server mixed
note "uptime: $(uptime)"
