#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, import circles, lints, and
# every test of every crate with all features, including the DynamoDB tests
# against a local DynamoDB-compatible server and the etcd tests against local
# etcd members (one, a 3-member cluster, one with TLS and authentication),
# all of which this script starts and stops itself.
#
# Usage: scripts/test.sh [extra arguments for cargo nextest run]
set -euo pipefail
cd "$(dirname "$0")/.."

# The etcd feature's client is generated from etcd's .proto files at build
# time (protoc), and its tests need etcd itself: Debian's packages.
if ! command -v protoc >/dev/null || ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
  echo "==> installing protobuf-compiler, etcd-server and etcd-client (apt-get)"
  as_root=()
  if [ "$(id -u)" != 0 ]; then as_root=(sudo); fi
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq protobuf-compiler etcd-server etcd-client openssl >/dev/null
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> import circles in monotone/src (scripts/check_imports.py)"
python3 scripts/check_imports.py

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

# `monotone man | man -l -` is tested: man-db renders the page (with
# groff-base). The machines come with both; install them where missing.
if ! command -v man >/dev/null 2>&1; then
  echo "==> man-db (to render the manual page in the tests)"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq man-db groff-base >/dev/null
  else
    echo "man is missing and cannot be installed here: the manual page test will say so" >&2
  fi
fi

echo "==> local DynamoDB server (moto, for the aws feature's tests)"
MONOTONE_MOTO_STATE="$(mktemp -d)"
# etcd's data in memory when it can be: its fsyncs are most of a write.
MONOTONE_ETCD_STATE="$(mktemp -d -p "$([[ -w /dev/shm ]] && echo /dev/shm || echo "${TMPDIR:-/tmp}")")"
export MONOTONE_MOTO_STATE MONOTONE_ETCD_STATE
trap 'scripts/moto.sh stop; scripts/etcd.sh stop; rm -rf "$MONOTONE_MOTO_STATE" "$MONOTONE_ETCD_STATE"' EXIT
scripts/moto.sh start >/dev/null
MONOTONE_TEST_DYNAMODB_ENDPOINT="$(scripts/moto.sh endpoint)"
echo "moto at $MONOTONE_TEST_DYNAMODB_ENDPOINT"
# Tests talk to that server only: test credentials, no profile, never
# instance metadata, whatever the caller's environment holds.
export MONOTONE_TEST_DYNAMODB_ENDPOINT
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_ENDPOINT_URL_DYNAMODB

echo "==> local etcd members (for the etcd feature's tests)"
MONOTONE_TEST_ETCD_ENDPOINTS="$(scripts/etcd.sh start)"
MONOTONE_TEST_ETCD_CLUSTER="$(scripts/etcd.sh start-cluster)"
MONOTONE_TEST_ETCD_SECURE="$(scripts/etcd.sh start-secure)"
export MONOTONE_TEST_ETCD_ENDPOINTS MONOTONE_TEST_ETCD_CLUSTER MONOTONE_TEST_ETCD_SECURE
echo "etcd at $MONOTONE_TEST_ETCD_ENDPOINTS; cluster at $MONOTONE_TEST_ETCD_CLUSTER; TLS and users at $MONOTONE_TEST_ETCD_SECURE"
unset ETCDCTL_ENDPOINTS ETCDCTL_CACERT ETCDCTL_CERT ETCDCTL_KEY ETCDCTL_USER ETCDCTL_PASSWORD

echo "==> tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --locked --no-fail-fast "$@"
else
  cargo test --workspace --all-features --locked --no-fail-fast "$@"
fi

echo "==> doctests"
cargo test --workspace --all-features --locked --doc
