#!/usr/bin/env bash
# A flamegraph of huddle (one shard, CPU 0) while loadgen (CPU 1) drives a scenario.
#
#   benches/flamegraph.sh [fanout|bigroom|hugeroom|fanout-1ms] [OUT.svg]
#
# Needs perf (Debian: linux-perf) and inferno (cargo install inferno). Builds the
# `profiling` profile (release + line tables) with frame pointers, samples the server with
# the cpu-clock event (works on VMs without hardware counters) and draws the SVG.
set -euo pipefail
scenario=${1:-fanout}
out=${2:-benches/flamegraph-$scenario.svg}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
for tool in perf inferno-collapse-perf inferno-flamegraph taskset; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install linux-perf; cargo install inferno)" >&2; exit 2; }
done
target=target/frame-pointers
echo "building the profiling profile with frame pointers into $target ..." >&2
RUSTFLAGS="-C force-frame-pointers=yes" cargo build -q --profile profiling --workspace --bins --target-dir "$target"
bin="$target/profiling"

flush=0
case "$scenario" in
  fanout) args=(--conns 1000 --room 10 --rate 20) ;;
  fanout-1ms) args=(--conns 1000 --room 10 --rate 20); flush=1000 ;;
  bigroom) args=(--conns 1000 --room 50 --rate 2) ;;
  hugeroom) args=(--conns 5000 --room 5000 --rate 1 --senders 20) ;;
  *) echo "unknown scenario $scenario" >&2; exit 2 ;;
esac

work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
cat >"$work/huddle.toml" <<TOML
pin_shards = false
[limits]
msgs_per_s = 100000
msgs_burst = 100000
flush_interval_us = $flush
TOML
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true  # as many descriptors as allowed (hugeroom: 5000+)
port=$((20000 + RANDOM % 20000))
taskset -c 0 "$bin/huddle" --config "$work/huddle.toml" --listen "127.0.0.1:$port" --shards 1 2>"$work/server.log" &
server=$!
sleep 0.5
taskset -c 1 "$bin/loadgen" --url "ws://127.0.0.1:$port/rooms" "${args[@]}" --size 64 \
  --warmup 4 --duration 10 --quiet >"$work/loadgen.out" &
loadgen=$!
sleep 5   # connect + warm-up
echo "sampling the server for 8 s ..." >&2
perf record -q -F 499 -e cpu-clock -g -p "$server" -o "$work/perf.data" -- sleep 8 2>/dev/null
wait "$loadgen" || true
tail -n 1 "$work/loadgen.out" >&2
perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf | inferno-flamegraph --title "huddle $scenario (1 shard, CPU 0)" >"$out"
echo "wrote $out" >&2
