#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, and every test of
# every crate with all features, including the DynamoDB tests against a local
# DynamoDB-compatible server that this script starts and stops itself.
#
# Usage: scripts/test.sh [extra arguments for cargo nextest run]
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

echo "==> tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --locked --no-fail-fast "$@"
else
  cargo test --workspace --all-features --locked --no-fail-fast "$@"
fi

echo "==> doctests"
cargo test --workspace --all-features --locked --doc
