#!/usr/bin/env bash
# Load test of `monotone serve`: 16 connections for 30 s each, closed loop
# (a connection sends its next request when the last one is answered), on
# 127.0.0.1 only.
#   1. the SQLite store: POST /counter/NAME (dist_counter's route) with +1
#      and -1 in turn; the value must equal the sum of the acknowledged
#      requests, and no request may fail;
#   2. the memory store: POST /v1/counters/NAME/next; every acknowledged
#      value distinct, the counter equal to their number.
# Prints one JSON line per run and writes bench/results/serve_load.csv.
#
# Usage: bench/serve_load.sh [--seconds N] [--connections N]
#   MONOTONE=PATH bench/serve_load.sh   loads that binary instead of this
#   tree's release build (to compare builds with the same load generator).
# Needs Rust and python3 (to read the address the server prints).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=30
CONNECTIONS=16
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) SECONDS_EACH="$2"; shift 2 ;;
    --connections) CONNECTIONS="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

if [[ -z "${MONOTONE:-}" ]]; then
  echo "==> building monotone and the load generator (release)" >&2
  cargo build --release --locked -p monotone-cli >&2
  MONOTONE=target/release/monotone
fi
cargo bench --locked -p monotone-cli --bench serve_load --no-run >&2

WORK="$(mktemp -d)"
SERVER_PID=""
stop_server() {
  if [[ -n "$SERVER_PID" ]]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" || true
    SERVER_PID=""
  fi
}
trap 'stop_server; rm -rf "$WORK"' EXIT

# Start `monotone serve` on STORE at a free port of 127.0.0.1; sets ADDR.
start_server() {
  local store="$1"
  : > "$WORK/listening.json"
  "$MONOTONE" --store "$store" serve --listen 127.0.0.1:0 \
    > "$WORK/listening.json" 2> "$WORK/server.log" &
  SERVER_PID=$!
  for _ in $(seq 1 200); do
    if grep -q '^}' "$WORK/listening.json"; then break; fi
    sleep 0.05
  done
  ADDR="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["listening"])' "$WORK/listening.json")"
}

load() {
  cargo bench --locked -q -p monotone-cli --bench serve_load -- \
    --addr "$ADDR" --connections "$CONNECTIONS" --seconds "$SECONDS_EACH" "$@"
}

mkdir -p bench/results
status=0

echo "==> $MONOTONE"  >&2
echo "==> SQLite store: POST /counter/load with +1 and -1, $CONNECTIONS connections, ${SECONDS_EACH}s" >&2
start_server "sqlite:$WORK/monotone.db"
SQLITE_RESULT="$(load --mode tally --id load)" || status=1
echo "$SQLITE_RESULT"
stop_server

echo "==> memory store: POST /v1/counters/load/next, $CONNECTIONS connections, ${SECONDS_EACH}s" >&2
start_server "memory:"
MEMORY_RESULT="$(load --mode next --id load)" || status=1
echo "$MEMORY_RESULT"
stop_server

python3 - "$SQLITE_RESULT" "$MEMORY_RESULT" > bench/results/serve_load.csv <<'PY'
import json, sys
print("store,route,connections,seconds,acknowledged,failed,requests_per_second,median_ms,p99_ms,max_ms,check")
for store, route, line in [("sqlite", "POST /counter/NAME +1/-1", sys.argv[1]),
                           ("memory", "POST /v1/counters/NAME/next", sys.argv[2])]:
    r = json.loads(line)
    l = r["latency_ms"]
    print(f'{store},{route},{r["connections"]},{r["seconds"]:.1f},{r["acknowledged"]},{r["failed"]},'
          f'{r["requests_per_second"]:.0f},{l["median"]:.3f},{l["p99"]:.3f},{l["max"]:.3f},{r["check"]}')
PY
cat bench/results/serve_load.csv
exit "$status"
