#!/usr/bin/env bash
# A local DynamoDB-compatible server for the tests: moto's server from PyPI,
# in the virtualenv .venv/, on 127.0.0.1, through scripts/moto_server.py.
#
# Usage:
#   scripts/moto.sh install    create .venv/ and install the pinned moto into it
#   scripts/moto.sh start      install if needed, start the server on a free
#                              port, wait until it answers, print its URL
#   scripts/moto.sh endpoint   print the running server's URL
#   scripts/moto.sh stop       stop the server started by `start`, by its PID
#
# Needs only python3 (3.9 or later) with its venv module and pip. The server's
# state (pid, port, log) lives in $MONOTONE_MOTO_STATE, by default
# .venv/moto-server/; scripts/test.sh gives each run its own.
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_VERSION="5.2.5"
VENV=".venv"
STATE="${MONOTONE_MOTO_STATE:-$VENV/moto-server}"
PYTHON="$VENV/bin/python"

installed() {
  [[ -x "$PYTHON" ]] &&
    [[ "$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null)" == "$MOTO_VERSION" ]] &&
    "$PYTHON" -c 'import flask, werkzeug' 2>/dev/null
}

install() {
  if installed; then
    return
  fi
  echo "installing moto[server]==$MOTO_VERSION into $VENV/" >&2
  python3 -m venv "$VENV"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2
}

running() {
  [[ -f "$STATE/pid" ]] && kill -0 "$(cat "$STATE/pid")" 2>/dev/null
}

endpoint() {
  echo "http://127.0.0.1:$(cat "$STATE/port")"
}

start() {
  if running && [[ -s "$STATE/port" ]]; then
    endpoint
    return
  fi
  install
  mkdir -p "$STATE"
  rm -f "$STATE/port" "$STATE/pid"
  "$PYTHON" scripts/moto_server.py --port-file "$STATE/port" >"$STATE/log" 2>&1 &
  echo $! >"$STATE/pid"
  # moto imports a lot on start; give it up to 60 s, then fail loudly.
  for _ in $(seq 600); do
    if [[ -s "$STATE/port" ]] && "$PYTHON" - "$(endpoint)" <<'EOF' 2>/dev/null; then
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/moto-api/", timeout=2).read()
EOF
      endpoint
      return
    fi
    if ! running; then
      echo "moto server exited on start; its log ($STATE/log):" >&2
      cat "$STATE/log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "moto server did not answer within 60 s; its log ($STATE/log):" >&2
  cat "$STATE/log" >&2
  stop
  exit 1
}

stop() {
  if [[ -f "$STATE/pid" ]]; then
    pid="$(cat "$STATE/pid")"
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$STATE/pid" "$STATE/port"
  fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  endpoint) running && endpoint || { echo "no moto server running" >&2; exit 1; } ;;
  stop) stop ;;
  *)
    echo "usage: $0 install|start|endpoint|stop" >&2
    exit 2
    ;;
esac
