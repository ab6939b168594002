#!/usr/bin/env bash
# Soak (issue 19; not in CI): one huddle, thousands of connections across the three
# dialects for SOAK_SECS (default 600), with WebSocket pings every 5 s, then everyone
# leaves; SOAK_WAVES (default 1) times over, the same server throughout (what a later wave
# adds to RSS tells held-for-reuse memory from a leak). Samples the server's RSS, descriptors and connections every 10 s into
# target/soak/samples.csv, prints a progress line each minute, and ends with a summary:
# RSS and fds before any client, RSS one minute in and at the end of the load (the drift
# under steady load), the peak, and RSS / fds 20 s after every client has gone. Each loadgen
# must report every message delivered (ratio >= 0.99) and no error, or the soak fails.
#
# Load (each loadgen its own process, 1 message/s per sending connection, 64-byte payloads):
#   rooms JSON        1,000 connections in rooms of 10
#   rooms MessagePack   500 connections in rooms of 10
#   cloudlink relay   1,000 connections in lobbies of 10 (/cl5)
#   PeerJS broker       500 connections in pairs (signaling at 1/s)
#   pairkit           1,000 connections: sessions of a host and 9 phones, host broadcasts 1/s
#
# Usage: benches/soak.sh [target/release/huddle]   (SOAK_SECS=600 SOAK_WAVES=1; cargo build --release --workspace --bins first)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/target/release/huddle}
loadgen=${LOADGEN:-$(dirname "$bin")/loadgen}
secs=${SOAK_SECS:-600}
waves=${SOAK_WAVES:-1}
out=$root/target/soak
[ -x "$bin" ] || { echo "soak: no huddle binary at $bin (cargo build --release --workspace --bins)" >&2; exit 1; }
[ -x "$loadgen" ] || { echo "soak: no loadgen binary at $loadgen" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
mkdir -p "$out"
rm -f "$out"/*.log "$out"/*.line "$out/samples.csv"

cat > "$out/huddle.toml" <<'EOF'
listen = "127.0.0.1:7790"
shards = 2

[limits]
ping_ms = 5000
idle_ms = 15000

[cloudlink]
conns_per_ip_per_min = 0
EOF

pid=""
lg_pids=()
cleanup() {
  for p in "${lg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

"$bin" --config "$out/huddle.toml" > "$out/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  ss -Htln "sport = :7790" 2>/dev/null | grep -q . && break
  kill -0 "$pid" 2>/dev/null || { cat "$out/server.log" >&2; echo "soak: huddle exited" >&2; exit 1; }
  sleep 0.1
done

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }
hwm() { awk '/^VmHWM:/ {print $2}' "/proc/$pid/status"; }
fds() { ls "/proc/$pid/fd" | wc -l; }
conns() { ss -Htn state established "sport = :7790" 2>/dev/null | wc -l; }

sleep 1
rss0=$(rss); fds0=$(fds)
echo "soak: huddle pid $pid, before any client: RSS ${rss0} KiB, ${fds0} fds; load for ${secs} s"
echo "t_s,rss_kb,fds,conns" > "$out/samples.csv"
echo "0,$rss0,$fds0,0" >> "$out/samples.csv"

url=ws://127.0.0.1:7790
common=(--rate 1 --size 64 --duration "$secs" --warmup 5 --drain 3 --connect-rate 1000
  --setup-timeout 60 --server-pid "$pid" -q)
run() {
  local name=$1; shift
  "$loadgen" "$@" "${common[@]}" > "$out/$name.line" 2> "$out/$name.log" &
  lg_pids+=($!)
}
fail=0
start=$(date +%s)
after_waves=""
for wave in $(seq "$waves"); do
  lg_pids=()
  run rooms-json --url "$url/rooms" --codec json --conns 1000 --room 10 --room-prefix "soak-json-$wave"
  run rooms-msgpack --url "$url/rooms" --codec msgpack --conns 500 --room 10 --room-prefix "soak-mp-$wave"
  run cl5 --url "$url/cl5?ugi=soak$wave" --cl5 --conns 1000 --room 10
  run peerjs --url "$url/" --peerjs --conns 500
  run pairkit --url "$url/pairkit" --pairkit --host-rate 1 --conns 1000 --room 10
  wave_start=$(date +%s)
  rss60=""
  while :; do
    sleep 10
    t=$(( $(date +%s) - start ))
    w=$(( $(date +%s) - wave_start ))
    alive=0
    for p in "${lg_pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
    r=$(rss); f=$(fds); c=$(conns)
    echo "$t,$r,$f,$c" >> "$out/samples.csv"
    [ -z "$rss60" ] && [ "$w" -ge 60 ] && rss60=$r
    if [ $((w % 60)) -lt 10 ]; then
      echo "soak: wave $wave, ${w} s: RSS ${r} KiB, ${f} fds, ${c} connections, ${alive}/5 loadgens running"
    fi
    [ "$alive" = 0 ] && break
    rss_end=$r
  done
  for p in "${lg_pids[@]}"; do wait "$p" || fail=1; done
  lg_pids=()
  sleep 20
  rss1=$(rss); fds1=$(fds)
  echo "$(( $(date +%s) - start )),$rss1,$fds1,$(conns)" >> "$out/samples.csv"
  for name in rooms-json rooms-msgpack cl5 peerjs pairkit; do
    line=$(cat "$out/$name.line" 2>/dev/null || true)
    echo "soak wave $wave $name: $line"
    ratio=$(tr ' ' '\n' <<< "$line" | sed -n 's/^ratio=//p')
    errors=$(tr ' ' '\n' <<< "$line" | sed -n 's/^errors=//p')
    setup=$(tr ' ' '\n' <<< "$line" | sed -n 's/^setup_ok=//p')
    if [ "$setup" != 1 ] || [ -z "$ratio" ] || [ "${errors:-1}" != 0 ] \
      || ! awk -v r="$ratio" 'BEGIN { exit !(r >= 0.99) }'; then
      echo "soak wave $wave $name: FAILED (setup_ok=$setup ratio=$ratio errors=$errors; see $out/$name.log)" >&2
      fail=1
    fi
  done
  echo "soak wave $wave: under load RSS ${rss60:-?} KiB at 60 s, ${rss_end:-?} KiB at the end (drift $(( ${rss_end:-0} - ${rss60:-0} )) KiB); 20 s after the last client RSS ${rss1} KiB, ${fds1} fds"
  after_waves="$after_waves ${rss1}"
  [ "$fds1" = "$fds0" ] || { echo "soak: descriptors ${fds1} after wave $wave, ${fds0} before" >&2; fail=1; }
done
peak=$(hwm)
kill -0 "$pid" 2>/dev/null || { echo "soak: huddle died" >&2; fail=1; }
echo "soak summary: before RSS ${rss0} KiB, ${fds0} fds; peak ${peak} KiB; RSS after each wave (KiB):${after_waves}; fds after: ${fds1}"
exit "$fail"
