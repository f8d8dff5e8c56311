#!/usr/bin/env bash
# Local etcd servers for the tests of the `etcd` feature: Debian's etcd
# (packages etcd-server and etcd-client, installed with apt-get if missing),
# on 127.0.0.1 and free ports, each with its data in a temporary folder.
#
# Usage:
#   scripts/etcd.sh install           install etcd and etcdctl if missing
#   scripts/etcd.sh start             one member; print its endpoint once healthy
#   scripts/etcd.sh start-cluster     three members on loopback; print their
#                                     endpoints, comma-separated, once healthy
#   scripts/etcd.sh start-secure      one member with TLS (client certificates
#                                     required) and authentication; print its
#                                     endpoint (files and users: see below)
#   scripts/etcd.sh endpoint|cluster|secure   print what `start...` printed
#   scripts/etcd.sh leader            the cluster member that leads now
#   scripts/etcd.sh kill ENDPOINT     SIGKILL the cluster member at ENDPOINT
#   scripts/etcd.sh restart ENDPOINT  start it again on its data (after kill)
#   scripts/etcd.sh stop              stop every member started here, by PID
#
# State (PIDs, ports, logs, data, certificates) lives in $MONOTONE_ETCD_STATE,
# by default .etcd-state/; scripts/test.sh gives each run its own folder.
# The secure member's files: $STATE/secure/{ca.pem,client.pem,client-key.pem};
# its users: root (password `root-secret`, all keys) and `monotone`
# (password `monotone-secret`, read and write under the prefix `monotone/`
# only).
set -euo pipefail
cd "$(dirname "$0")/.."

STATE="${MONOTONE_ETCD_STATE:-.etcd-state}"
# Short heartbeats so that a killed leader is replaced within a second or
# two: the failover tests wait for that.
TIMING=(--heartbeat-interval 50 --election-timeout 500)

install() {
  if command -v etcd >/dev/null && command -v etcdctl >/dev/null; then
    return
  fi
  echo "installing etcd-server and etcd-client with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq etcd-server etcd-client >&2
}

# N free TCP ports on 127.0.0.1, one a line.
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# Whether the member whose folder is $1 runs (a killed member that its new
# parent has not reaped yet does not).
running() {
  [[ -f "$1/pid" ]] || return 1
  local pid
  pid="$(cat "$1/pid")"
  kill -0 "$pid" 2>/dev/null || return 1
  ! grep -q '^[^)]*) [ZX]' "/proc/$pid/stat" 2>/dev/null
}

# Start the member whose folder $1 holds its command line (`cmd`), in the
# background, logging to $1/log, in a session of its own: a test that
# restarts a member must not take it along when its process group ends.
launch() {
  local dir="$1"
  # shellcheck disable=SC2046
  eval "set -- $(cat "$dir/cmd")"
  setsid "$@" >>"$dir/log" 2>&1 </dev/null &
  echo $! >"$dir/pid"
}

# Wait until every endpoint of $1 (comma-separated) answers healthy, with
# the etcdctl arguments that follow; fail loudly after 60 s.
wait_healthy() {
  local endpoints="$1"
  shift
  for _ in $(seq 600); do
    if ETCDCTL_API=3 etcdctl --endpoints "$endpoints" --command-timeout 2s "$@" \
      endpoint health >/dev/null 2>&1; then
      return
    fi
    sleep 0.1
  done
  echo "etcd at $endpoints did not become healthy within 60 s; logs:" >&2
  tail -n 30 "$STATE"/*/log "$STATE"/*/*/log 2>/dev/null >&2 || true
  exit 1
}

# Write a member's command line: $1 folder, $2 name, $3 client port,
# $4 peer port, $5 initial cluster, then extra arguments.
member() {
  local dir="$1" name="$2" client="$3" peer="$4" cluster="$5" scheme="${SCHEME:-http}"
  shift 5
  mkdir -p "$dir/data"
  rm -f "$dir/log"
  printf '%q ' etcd --name "$name" --data-dir "$dir/data" \
    --listen-client-urls "$scheme://127.0.0.1:$client" \
    --advertise-client-urls "$scheme://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "$cluster" --initial-cluster-state new \
    --initial-cluster-token "monotone-test-$$" "${TIMING[@]}" "$@" >"$dir/cmd"
  echo "$scheme://127.0.0.1:$client" >"$dir/endpoint"
}

start() {
  install
  local dir="$STATE/single"
  if running "$dir"; then
    cat "$dir/endpoint"
    return
  fi
  mapfile -t ports < <(free_ports 2)
  member "$dir" single "${ports[0]}" "${ports[1]}" "single=http://127.0.0.1:${ports[1]}"
  launch "$dir"
  wait_healthy "$(cat "$dir/endpoint")"
  cat "$dir/endpoint"
}

start_cluster() {
  install
  local dir="$STATE/cluster"
  if [[ -s "$dir/endpoints" ]] && running "$dir/m1" && running "$dir/m2" && running "$dir/m3"; then
    cat "$dir/endpoints"
    return
  fi
  mapfile -t ports < <(free_ports 6)
  local initial="m1=http://127.0.0.1:${ports[1]},m2=http://127.0.0.1:${ports[3]},m3=http://127.0.0.1:${ports[5]}"
  local endpoints=()
  for i in 1 2 3; do
    member "$dir/m$i" "m$i" "${ports[$((2 * i - 2))]}" "${ports[$((2 * i - 1))]}" "$initial"
    launch "$dir/m$i"
    endpoints+=("$(cat "$dir/m$i/endpoint")")
  done
  (IFS=,; echo "${endpoints[*]}") >"$dir/endpoints"
  wait_healthy "$(cat "$dir/endpoints")"
  cat "$dir/endpoints"
}

# A CA, a server certificate for 127.0.0.1 and a client certificate.
certificates() {
  local dir="$1"
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=monotone test CA" \
      -keyout ca-key.pem -out ca.pem 2>/dev/null
    for who in server client; do
      openssl req -newkey rsa:2048 -nodes -subj "/CN=$who" \
        -keyout "$who-key.pem" -out "$who.csr" 2>/dev/null
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >"$who.ext"
      openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
        -days 2 -extfile "$who.ext" -out "$who.pem" 2>/dev/null
    done
  )
}

start_secure() {
  install
  command -v openssl >/dev/null || {
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq openssl >&2
  }
  local dir="$STATE/secure"
  if running "$dir"; then
    cat "$dir/endpoint"
    return
  fi
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  certificates "$dir"
  mapfile -t ports < <(free_ports 2)
  SCHEME=https member "$dir" secure "${ports[0]}" "${ports[1]}" "secure=http://127.0.0.1:${ports[1]}" \
    --cert-file "$dir/server.pem" --key-file "$dir/server-key.pem" \
    --client-cert-auth --trusted-ca-file "$dir/ca.pem"
  launch "$dir"
  local tls=(--cacert "$dir/ca.pem" --cert "$dir/client.pem" --key "$dir/client-key.pem")
  local endpoint
  endpoint="$(cat "$dir/endpoint")"
  wait_healthy "$endpoint" "${tls[@]}"
  local ctl=(etcdctl --endpoints "$endpoint" "${tls[@]}")
  {
    "${ctl[@]}" user add root:root-secret
    "${ctl[@]}" user grant-role root root
    "${ctl[@]}" user add monotone:monotone-secret
    "${ctl[@]}" role add monotone
    "${ctl[@]}" role grant-permission monotone --prefix=true readwrite monotone/
    "${ctl[@]}" user grant-role monotone monotone
    "${ctl[@]}" auth enable
  } >/dev/null
  echo "$endpoint"
}

# The folder of the cluster member at endpoint $1.
member_dir() {
  for i in 1 2 3; do
    if [[ "$(cat "$STATE/cluster/m$i/endpoint" 2>/dev/null)" == "$1" ]]; then
      echo "$STATE/cluster/m$i"
      return
    fi
  done
  echo "no cluster member at $1" >&2
  exit 2
}

leader() {
  # Under load a status may time out, and right after a member died there
  # may be no leader for a moment: ask for up to 10 s.
  for _ in $(seq 50); do
    ETCDCTL_API=3 etcdctl --endpoints "$(cat "$STATE/cluster/endpoints")" --command-timeout 2s \
      endpoint status -w json 2>/dev/null | python3 -c '
import json, sys
try:
    statuses = json.load(sys.stdin)
except ValueError:
    sys.exit(1)
for s in statuses:
    if s["Status"]["header"]["member_id"] == s["Status"]["leader"]:
        print(s["Endpoint"])
        break
else:
    sys.exit(1)
' && return
    sleep 0.2
  done
  echo "the cluster has no leader" >&2
  exit 1
}

kill_member() {
  local dir
  dir="$(member_dir "$1")"
  if running "$dir"; then
    kill -9 "$(cat "$dir/pid")"
  fi
}

restart_member() {
  local dir
  dir="$(member_dir "$1")"
  if ! running "$dir"; then
    # Its data holds its membership: it rejoins as it was.
    sed -i 's/--initial-cluster-state new/--initial-cluster-state existing/' "$dir/cmd"
    launch "$dir"
  fi
  wait_healthy "$1"
}

stop() {
  local pids=()
  for pidfile in "$STATE"/single/pid "$STATE"/secure/pid "$STATE"/cluster/m?/pid; do
    [[ -f "$pidfile" ]] || continue
    local pid
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      pids+=("$pid")
    fi
    rm -f "$pidfile"
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  done
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  start-cluster) start_cluster ;;
  start-secure) start_secure ;;
  endpoint) cat "$STATE/single/endpoint" ;;
  cluster) cat "$STATE/cluster/endpoints" ;;
  secure) cat "$STATE/secure/endpoint" ;;
  leader) leader ;;
  kill) kill_member "${2:?endpoint}" ;;
  restart) restart_member "${2:?endpoint}" ;;
  stop) stop ;;
  *)
    echo "usage: $0 install|start|start-cluster|start-secure|endpoint|cluster|secure|leader|kill E|restart E|stop" >&2
    exit 2
    ;;
esac
