#!/usr/bin/env bash
# The living reap the dead on DynamoDB (a local moto server): SIGKILL of a
# `monotone lock` at the back of a queue -> its ticket gone from `queue
# list`, while the holders ahead of it live; --ttl 1s and 2s, 5 runs each.
# Prints a table, writes bench/results/reap.csv.
#
# Usage: bench/reap.sh [--runs N] [--ttl D...]
#
# Needs Rust and python3 (with venv and pip); installs moto's server into
# .venv/ on first use, as the tests do.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> building monotone (release)" >&2
cargo build --release --locked -p monotone-cli >&2

echo "==> preparing moto" >&2
scripts/moto.sh install

exec .venv/bin/python bench/reap.py \
  --monotone target/release/monotone \
  --moto-python .venv/bin/python \
  --moto-server scripts/moto_server.py \
  --out bench/results \
  "$@"
