#!/usr/bin/env bash
# Whole-process benchmark: monotone against the AWS CLI on a local
# DynamoDB-compatible server, request counts per command, and contention on
# one queue. Prints tables, writes CSV files and contention.png to bench/results/.
#
# Usage: bench/run.sh [--rounds N] [--joins-per-worker N]
#
# Needs Rust and python3 (with venv and pip). Installs, on first use, moto's
# server into .venv/ (as the tests do) and the AWS CLI and matplotlib into
# bench/.venv/. Starts its own server on 127.0.0.1 and stops it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> building monotone (release)" >&2
cargo build --release --locked -p monotone-cli >&2

echo "==> preparing moto, the AWS CLI and matplotlib" >&2
scripts/moto.sh install
if [[ ! -x bench/.venv/bin/aws ]] || ! bench/.venv/bin/python -c 'import matplotlib' 2>/dev/null; then
  python3 -m venv bench/.venv
  bench/.venv/bin/python -m pip install --quiet --disable-pip-version-check \
    "awscli==1.46.2" "matplotlib>=3.8,<4" >&2
fi

exec bench/.venv/bin/python bench/dynamodb.py \
  --monotone target/release/monotone \
  --aws bench/.venv/bin/aws \
  --moto-python .venv/bin/python \
  --moto-server scripts/moto_server.py \
  --out bench/results \
  "$@"
