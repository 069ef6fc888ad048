#!/usr/bin/env bash
# Starts a local trial cluster on loopback: 3 nats-server nodes (JetStream, R3 stream,
# sync_interval: always) and 2 `whistle serve` instances against them; stops it again.
#
#   deploy/local-cluster.sh start DIR [BASE_PORT]   # nats on BASE..BASE+2, whistle on BASE+20, BASE+21
#   deploy/local-cluster.sh stop DIR
#   deploy/local-cluster.sh node DIR N kill|start   # one nats node (1..3), e.g. to test a failure
#
# Environment: WHISTLE_BIN (default: target/release/whistle, else `whistle` on PATH),
# NATS_SERVER (default: nats-server on PATH, else .tools/nats/bin/nats-server),
# WHISTLE_CONFIG and WHISTLE_POLICY (passed to both instances when set).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

usage() { sed -n '2,12p' "$0" >&2; exit 2; }

find_bin() {
  if [ -n "${WHISTLE_BIN:-}" ]; then echo "$WHISTLE_BIN"
  elif [ -x "$here/target/release/whistle" ]; then echo "$here/target/release/whistle"
  else command -v whistle || { echo "no whistle binary: cargo build --release" >&2; exit 1; }
  fi
}

find_nats() {
  if [ -n "${NATS_SERVER:-}" ]; then echo "$NATS_SERVER"
  elif command -v nats-server >/dev/null 2>&1; then command -v nats-server
  elif [ -x "$here/.tools/nats/bin/nats-server" ]; then echo "$here/.tools/nats/bin/nats-server"
  else echo "no nats-server: ./scripts/test.sh installs one into .tools/nats" >&2; exit 1
  fi
}

wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listening on 127.0.0.1:$1" >&2; return 1
}

node_config() { # DIR N BASE
  local dir=$1 n=$2 base=$3
  cat > "$dir/nats-$n.conf" <<CONF
server_name: whistle-$n
listen: 127.0.0.1:$((base + n - 1))
jetstream {
  store_dir: "$dir/store-$n"
  # acknowledged writes are synced to disk before the acknowledgement
  sync_interval: always
}
cluster {
  name: whistle-local
  listen: 127.0.0.1:$((base + 9 + n))
  routes: [
    nats-route://127.0.0.1:$((base + 10))
    nats-route://127.0.0.1:$((base + 11))
    nats-route://127.0.0.1:$((base + 12))
  ]
}
CONF
}

start_node() { # DIR N
  local dir=$1 n=$2
  "$(find_nats)" -c "$dir/nats-$n.conf" >"$dir/nats-$n.log" 2>&1 &
  echo $! > "$dir/nats-$n.pid"
}

start() {
  local dir=$1 base=${2:-14222}
  mkdir -p "$dir"
  echo "$base" > "$dir/base-port"
  for n in 1 2 3; do node_config "$dir" "$n" "$base"; start_node "$dir" "$n"; done
  for n in 1 2 3; do wait_port $((base + n - 1)); done
  local urls="nats://127.0.0.1:$base,nats://127.0.0.1:$((base + 1)),nats://127.0.0.1:$((base + 2))"
  local bin; bin=$(find_bin)
  mkdir -p "$dir/whistle-1" "$dir/whistle-2"
  for i in 1 2; do
    local extra=()
    [ -n "${WHISTLE_CONFIG:-}" ] && extra+=(--config "$WHISTLE_CONFIG")
    [ -n "${WHISTLE_POLICY:-}" ] && extra+=(--policy "$WHISTLE_POLICY")
    # The first instance creates the R3 stream; the cluster needs a moment to elect a leader.
    for attempt in $(seq 1 50); do
      "$bin" serve --nats "$urls" --nats-replicas 3 --data "$dir/whistle-$i" \
        --listen "127.0.0.1:$((base + 19 + i))" "${extra[@]}" >"$dir/whistle-$i.log" 2>&1 &
      echo $! > "$dir/whistle-$i.pid"
      if wait_port $((base + 19 + i)) 2>/dev/null; then break; fi
      kill "$(cat "$dir/whistle-$i.pid")" 2>/dev/null || true
      sleep 0.2
    done
    wait_port $((base + 19 + i))
    if [ "$i" = 1 ]; then
      # One organisation and one set of tokens for both instances.
      for f in org.toml tokens.toml demo-tokens.txt secret; do
        [ -f "$dir/whistle-1/$f" ] && [ ! -f "$dir/whistle-2/$f" ] && cp -p "$dir/whistle-1/$f" "$dir/whistle-2/$f"
      done
    fi
  done
  echo "nats: $urls"
  echo "whistle: http://127.0.0.1:$((base + 20))/ and http://127.0.0.1:$((base + 21))/"
  echo "tokens: $dir/whistle-1/demo-tokens.txt (both instances)"
}

stop() {
  local dir=$1
  for f in "$dir"/whistle-*.pid "$dir"/nats-*.pid; do
    [ -f "$f" ] || continue
    local pid; pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$f"
  done
}

node() {
  local dir=$1 n=$2 action=$3
  case "$action" in
    kill) kill -KILL "$(cat "$dir/nats-$n.pid")"; rm -f "$dir/nats-$n.pid" ;;
    start) start_node "$dir" "$n"; wait_port $(( $(cat "$dir/base-port") + n - 1 )) ;;
    *) usage ;;
  esac
}

case "${1:-}" in
  start) [ $# -ge 2 ] || usage; start "$2" "${3:-}" ;;
  stop) [ $# -eq 2 ] || usage; stop "$2" ;;
  node) [ $# -eq 4 ] || usage; node "$2" "$3" "$4" ;;
  *) usage ;;
esac
