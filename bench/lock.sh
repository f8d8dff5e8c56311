#!/usr/bin/env bash
# Lock hand-over latency of `monotone lock` on SQLite and on DynamoDB (a
# local moto server): previous command ends -> next command starts, median
# and p99. Prints a table, writes bench/results/lock_handover.csv.
#
# Usage: bench/lock.sh [--workers N] [--rounds N] [--hold SECONDS] [--ttl D]
#
# Needs Rust and python3 (with venv and pip); installs moto's server into
# .venv/ on first use, as the tests do.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> building monotone (release)" >&2
cargo build --release --locked -p monotone-cli >&2

echo "==> preparing moto" >&2
scripts/moto.sh install

exec .venv/bin/python bench/lock.py \
  --monotone target/release/monotone \
  --moto-python .venv/bin/python \
  --moto-server scripts/moto_server.py \
  --out bench/results \
  "$@"
