#!/usr/bin/env bash
# The bootstrap barrier: N members claim with `claim --members N` at once;
# the time from the last claim to the last member printing its roster, on
# SQLite and on DynamoDB (a local moto server), for 3 and 32 members, with
# the default poll (1s) and --poll 100ms. Prints a table, writes
# bench/results/barrier.csv.
#
# Usage: bench/barrier.sh [--rounds N] [--members 3,32]
#
# Needs Rust and python3 (with venv and pip); installs moto's server into
# .venv/ on first use, as the tests do.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> building monotone (release)" >&2
cargo build --release --locked -p monotone-cli >&2

echo "==> preparing moto" >&2
scripts/moto.sh install

exec .venv/bin/python bench/barrier.py \
  --monotone target/release/monotone \
  --moto-python .venv/bin/python \
  --moto-server scripts/moto_server.py \
  --out bench/results \
  "$@"
