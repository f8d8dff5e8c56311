#!/usr/bin/env bash
# monotone on etcd side by side with etcdctl on the same etcd member: a
# counter increment per process against `etcdctl put`, lock hand-over
# against `etcdctl lock`, crash takeover with the same lease against
# `etcdctl lock --ttl`, watch latency against `etcdctl watch`, and gRPC
# requests per command. Prints tables, writes bench/results/etcd.csv.
#
# Usage: bench/etcd.sh [--rounds N]
#
# Needs Rust, python3, protoc and etcd (scripts/etcd.sh installs etcd with
# apt-get if missing); starts its own member on 127.0.0.1 and stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> building monotone with the etcd feature (release)" >&2
cargo build --release --locked -p monotone-cli --features etcd >&2

MONOTONE_ETCD_STATE="$(mktemp -d -p "$([[ -w /dev/shm ]] && echo /dev/shm || echo "${TMPDIR:-/tmp}")")"
export MONOTONE_ETCD_STATE
trap 'scripts/etcd.sh stop; rm -rf "$MONOTONE_ETCD_STATE"' EXIT
endpoint="$(scripts/etcd.sh start)"
echo "==> etcd $(etcd --version | head -1 | awk '{print $3}') at $endpoint" >&2

python3 bench/etcd.py --monotone target/release/monotone --endpoint "$endpoint" --out bench/results "$@"
