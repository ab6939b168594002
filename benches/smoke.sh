#!/usr/bin/env bash
# Smoke test of the relay path over real sockets (not a timing test): starts huddle (the
# binary given, release or debug), runs loadgen (the `loadgen` beside it) with ~50
# connections for ~3 s per mode — rooms of 10 in each codec, cloudlink relay lobbies of 10
# (`cl5`), PeerJS pairs on the broker (`peerjs`), PairKit sessions of 1 host + 9 phones
# (`pairkit`: inputs at 10/s per phone, broadcasts at 10/s per host) — and fails when any
# message is lost (ratio < 0.99), any error is counted, or setup fails.
#
# Usage: benches/smoke.sh [target/debug/huddle]   (SMOKE_CODECS="json msgpack cl5 peerjs pairkit")
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/target/debug/huddle}
loadgen=${LOADGEN:-$(dirname "$bin")/loadgen}
codecs=${SMOKE_CODECS:-json msgpack cl5 peerjs pairkit}
[ -x "$bin" ] || { echo "smoke: no huddle binary at $bin (cargo build --workspace --bins)" >&2; exit 1; }
[ -x "$loadgen" ] || { echo "smoke: no loadgen binary at $loadgen (cargo build --workspace --bins)" >&2; exit 1; }

tmp=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

port=""
for _ in $(seq 50); do
  p=$((10000 + RANDOM % 20000))   # below the ephemeral range
  if ! ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then port=$p; break; fi
done
[ -n "$port" ] || { echo "smoke: no free port" >&2; exit 1; }

"$bin" --listen "127.0.0.1:$port" --shards 1 > "$tmp/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  ss -Htln "sport = :$port" 2>/dev/null | grep -q . && break
  kill -0 "$pid" 2>/dev/null || { cat "$tmp/server.log" >&2; echo "smoke: huddle exited" >&2; exit 1; }
  sleep 0.1
done

fail=0
for codec in $codecs; do
  case "$codec" in
    cl5) mode=(--url "ws://127.0.0.1:$port/cl5?ugi=smoke" --cl5) ;;
    peerjs) mode=(--url "ws://127.0.0.1:$port/" --peerjs) ;;
    pairkit) mode=(--url "ws://127.0.0.1:$port/pairkit" --pairkit --host-rate 10) ;;
    *) mode=(--url "ws://127.0.0.1:$port/rooms" --codec "$codec") ;;
  esac
  # 50 connections, rooms of 10, 10 msg/s each (under the default 60/s rate limit, and
  # pairkit's 100/s; 50 cloudlink upgrades are under the default 120 per address per
  # minute).
  line=$("$loadgen" "${mode[@]}" --conns 50 --room 10 \
    --rate 10 --size 64 --duration 2 --warmup 1 --room-prefix "smoke-$codec" -q \
    --server-pid "$pid" 2> "$tmp/loadgen-$codec.log") || true
  echo "smoke $codec: $line"
  ratio=$(tr ' ' '\n' <<< "$line" | sed -n 's/^ratio=//p')
  errors=$(tr ' ' '\n' <<< "$line" | sed -n 's/^errors=//p')
  setup=$(tr ' ' '\n' <<< "$line" | sed -n 's/^setup_ok=//p')
  expected=$(tr ' ' '\n' <<< "$line" | sed -n 's/^expected=//p')
  if [ "$setup" != 1 ] || [ -z "$ratio" ] || [ "${expected:-0}" = 0 ] || [ "$errors" != 0 ] \
    || awk -v r="$ratio" 'BEGIN{exit !(r < 0.99)}'; then
    echo "smoke $codec: FAILED (setup_ok=$setup ratio=$ratio errors=$errors expected=$expected)" >&2
    sed -n '1,20p' "$tmp/loadgen-$codec.log" >&2
    fail=1
  fi
done
kill -0 "$pid" 2>/dev/null || { echo "smoke: huddle died" >&2; cat "$tmp/server.log" >&2; fail=1; }
[ $fail = 0 ] && echo "smoke: ok"
exit $fail
