#!/usr/bin/env bash
# Push, not poll: on the embedded store with default options, lock
# hand-over, graceful leader change, watch latency, idle CPU of waiters and
# a watcher, side by side with flock(1); and `counter next` whole-process
# time against another commit's build. Prints tables, writes
# bench/results/push_*.csv.
#
# Usage: bench/push.sh [--base COMMIT] [options of bench/push.py]
#
# --base COMMIT builds that commit (release, in a temporary git worktree,
# sharing this tree's target/ so that only monotone's own crates build
# again) for the `counter next` comparison. The machine may be shared: run
# when `uptime` shows little load, and repeat.
set -euo pipefail
cd "$(dirname "$0")/.."

base=""
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --base) base="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done

target="$(pwd)/target"
if [[ -n "$base" ]]; then
  echo "==> building $base (release) for the comparison" >&2
  tree="$(mktemp -d)/base"
  git worktree add --detach "$tree" "$base" >&2
  (cd "$tree" && CARGO_TARGET_DIR="$target" cargo build --release --locked -p monotone-cli >&2)
  mkdir -p "$target/bench-base"
  cp "$target/release/monotone" "$target/bench-base/monotone"
  git worktree remove --force "$tree"
  args+=(--base "$target/bench-base/monotone" --base-name "$(git rev-parse --short "$base")")
fi

echo "==> building monotone (release)" >&2
cargo build --release --locked -p monotone-cli >&2

exec python3 bench/push.py --monotone "$target/release/monotone" --out bench/results "${args[@]}"
