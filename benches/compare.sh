#!/usr/bin/env bash
# Side-by-side comparison: huddle (one shard) and the uWebSockets.js room relay
# (../shared/peers/uws-relay.sh), each pinned to one CPU, driven by `loadgen` pinned to
# another, in one invocation. Prints one table per scenario (see ../shared/BENCHMARKS.md).
#
# Usage: benches/compare.sh [--quick] [SCENARIO...]
#   scenarios: fanout fanout10 fanout40 flush bigroom hugeroom idle saturate lobby peerjs
#              pairkit (default: the first eight but flush; `flush` = fanout with huddle at
#              limits.flush_interval_us 0 and 1000; `all` = the first eight)
#   lobby      huddle's cloudlink relay (lobbies of 8, G_MSG at 20/s) beside huddle's rooms
#              fanout at the same shape: server CPU per delivered message, lobby / rooms
#   pairkit    huddle's PairKit relay (sessions of 1 host + 8 phones: phones send
#              input.widget_event at 30/s to the host, the host control.broadcast at 10/s to
#              its phones) beside huddle's rooms fanout in rooms of 9 at 4 msg/s each (about
#              the same deliveries/s): server CPU per delivered message, pairkit / rooms, and
#              the host's input latency p50/p99 (phone send -> host receive)
#   peerjs     500 pairs of PeerJS peers (OFFER or ANSWER + 4 CANDIDATEs each per second):
#              huddle's broker beside the `peer` 1.0.2 server (../shared/peers/peerjs-server.sh),
#              server CPU per forward, huddle / peer
#   --quick    smoke mode: 2 s measured + 1 s warm-up, few connections
# saturate estimates each server's ceiling and compares them at the same rate (the
# highest every compared server delivered at >= 0.99): estimates grow with the rate.
# Environment:
#   DURATION=10 WARMUP=3    measured window and warm-up, seconds
#   SAT_DURATION=5 SAT_WARMUP=2 SAT_RATES="20 30 40 60 80 100 130 160 200"
#   HUDDLE_FLUSH="0"        huddle variants: flush_interval_us values (each one a row)
#   ROUNDS=1                rounds per scenario (servers in turn each round; each huddle row
#                           is compared with its round's peer, then the median ratio)
#   PEERS="uws"             peers to compare with ("" = huddle only)
#   PEERJS_RATE=5           peerjs: signals per peer per second (5 = the scenario's 10 per pair)
#   PAIRKIT_RATE=30 PAIRKIT_HOST_RATE=10
#                           pairkit: inputs per phone, broadcasts per host per second
#   PAIRKIT_ROOMS_RATE=4    pairkit: the rooms row's msg/s per member (rooms of 9)
#   CODEC=json              huddle's codec (json | msgpack)
#   BATCH_US=               loadgen --batch-us (poll tick, µs; empty = loadgen's default, 100)
#   SERVER_CPU=0 LOADGEN_CPU=1
#   QUIET_BUSY_MAX=15       % of the box busy (1 s sample) above which a run waits...
#   QUIET_WAIT=120          ...at most this many seconds, then runs anyway, marked noisy
#   OTHER_MAX=15 RETRIES=2  a run during which other processes used > OTHER_MAX % of a core
#                           is run again (at most RETRIES times; the last one is kept)
#   NO_BUILD=1              skip `cargo build --release --workspace --bins`
#   OUT=DIR                 where logs and raw summary lines go (default target/compare/DATE)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

quick=0
scenarios=()
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option $arg" >&2; exit 2 ;;
    *) scenarios+=("$arg") ;;
  esac
done
if [ ${#scenarios[@]} -eq 0 ]; then
  scenarios=(fanout fanout10 fanout40 bigroom hugeroom idle saturate)
elif [ "${scenarios[0]}" = all ]; then
  scenarios=(fanout fanout10 fanout40 flush bigroom hugeroom idle saturate)
fi

if [ $quick = 1 ]; then
  DURATION=${DURATION:-2}; WARMUP=${WARMUP:-1}
  SAT_DURATION=${SAT_DURATION:-2}; SAT_WARMUP=${SAT_WARMUP:-1}
  SAT_RATES=${SAT_RATES:-"20 40 60"}
  QUIET_WAIT=${QUIET_WAIT:-10}
else
  DURATION=${DURATION:-10}; WARMUP=${WARMUP:-3}
  SAT_DURATION=${SAT_DURATION:-5}; SAT_WARMUP=${SAT_WARMUP:-2}
  SAT_RATES=${SAT_RATES:-"20 30 40 60 80 100 130 160 200"}
  QUIET_WAIT=${QUIET_WAIT:-120}
fi
HUDDLE_FLUSH=${HUDDLE_FLUSH:-0}
ROUNDS=${ROUNDS:-1}
PEERS=${PEERS-uws}
PEERJS_RATE=${PEERJS_RATE:-5}
PAIRKIT_RATE=${PAIRKIT_RATE:-30}
PAIRKIT_HOST_RATE=${PAIRKIT_HOST_RATE:-10}
PAIRKIT_ROOMS_RATE=${PAIRKIT_ROOMS_RATE:-4}
CODEC=${CODEC:-json}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
QUIET_BUSY_MAX=${QUIET_BUSY_MAX:-15}
OTHER_MAX=${OTHER_MAX:-15}
RETRIES=${RETRIES:-2}
OUT=${OUT:-$root/target/compare/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
results="$OUT/results.txt"
: > "$results"

huddle_bin=$root/target/release/huddle
loadgen_bin=$root/target/release/loadgen
uws_sh=$root/../shared/peers/uws-relay.sh
peerjs_sh=$root/../shared/peers/peerjs-server.sh

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 12000 ]; then
  echo "warning: ulimit -n is $(ulimit -n); 5000-connection scenarios need ~10000" >&2
fi
if [ "$(nproc)" -lt 2 ]; then
  echo "warning: fewer than 2 CPUs: server and loadgen share one" >&2
fi

if [ "${NO_BUILD:-0}" != 1 ]; then
  echo "== cargo build --release --workspace --bins" >&2
  cargo build --release --workspace --bins >&2
fi
[ -x "$huddle_bin" ] && [ -x "$loadgen_bin" ] || { echo "missing $huddle_bin or $loadgen_bin" >&2; exit 1; }
if [[ " $PEERS " == *" uws "* ]] && [ ! -f "$uws_sh" ]; then
  echo "warning: $uws_sh not found: running huddle only" >&2
  PEERS=""
fi

current_pid=""
cleanup() {
  if [ -n "$current_pid" ]; then kill "$current_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT INT TERM

# --- the box -------------------------------------------------------------------------------

# Busy % of the whole box (all CPUs) over a 1 s sample.
busy_pct() {
  local a b
  a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
  local tot=0 idle=0 i
  for i in 1 2 3 4 5 6 7 8; do tot=$((tot + b[i] - a[i])); done
  idle=$((b[4] - a[4] + b[5] - a[5]))
  [ "$tot" -gt 0 ] || { echo 0; return; }
  echo $(( (tot - idle) * 100 / tot ))
}

# Waits (up to QUIET_WAIT s) for a quiet box; sets `noisy` to the busy % when it never got quiet.
noisy=""
wait_quiet() {
  local waited=0 b
  noisy=""
  while :; do
    b=$(busy_pct)
    if [ "$b" -le "$QUIET_BUSY_MAX" ]; then return 0; fi
    if [ "$waited" -ge "$QUIET_WAIT" ]; then
      echo "warning: box still ${b}% busy after ${waited}s (load: $(cut -d' ' -f1-3 /proc/loadavg)); running anyway, marked noisy" >&2
      noisy=$b
      return 0
    fi
    [ "$waited" = 0 ] && echo "box ${b}% busy (load $(cut -d' ' -f1-3 /proc/loadavg)): waiting for quiet (max ${QUIET_WAIT}s)" >&2
    sleep 4; waited=$((waited + 5))
  done
}

free_port() {
  local p
  while :; do
    # Below the kernel's ephemeral range (32768-60999 by default): a port loadgen's own
    # connections hold is not listening, yet a peer cannot bind it.
    p=$((10000 + RANDOM % 20000))
    ss -Htln "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return; }
  done
}

wait_listen() { # port pid timeout_s
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    ss -Htln "sport = :$1" 2>/dev/null | grep -q . && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# Every thread of PID allowed only on SERVER_CPU (taskset) — prints the offenders.
affinity_violations() {
  local t list bad=""
  for t in /proc/"$1"/task/*; do
    list=$(taskset -pc "${t##*/}" 2>/dev/null | sed 's/.*: //') || continue
    [ "$list" = "$SERVER_CPU" ] || bad="$bad ${t##*/}:$list"
  done
  echo "$bad"
}

# --- one run -------------------------------------------------------------------------------

# run_once LABEL KIND FLUSH SCENARIO -- loadgen args...
# KIND: huddle | huddle-cl5 | huddle-peerjs | huddle-pairkit | uws | peer. Sets `line` to
# loadgen's summary
# (plus the script's own checks).
line=""
run_once() {
  local label=$1 kind=$2 flush=$3 scen=$4; shift 5
  local port pid log cfg url extra=()
  wait_quiet
  port=$(free_port)
  log="$OUT/${scen}-${label//[^A-Za-z0-9@#.=-]/_}-$port"
  case "$kind" in
    huddle*)
      cfg="$log.toml"
      # The per-address bucket of cloudlink upgrades is off: every connection comes from
      # 127.0.0.1.
      cat > "$cfg" <<EOF
pin_shards = false
[limits]
msgs_per_s = 100000
msgs_burst = 100000
flush_interval_us = $flush
[cloudlink]
conns_per_ip_per_min = 0
EOF
      taskset -c "$SERVER_CPU" "$huddle_bin" --config "$cfg" --listen "127.0.0.1:$port" --shards 1 \
        > "$log.server.log" 2>&1 &
      pid=$!
      case "$kind" in
        huddle) url="ws://127.0.0.1:$port/rooms"; extra=(--codec "$CODEC") ;;
        huddle-cl5) url="ws://127.0.0.1:$port/cl5?ugi=bench"; extra=(--cl5) ;;
        huddle-peerjs) url="ws://127.0.0.1:$port/"; extra=(--peerjs) ;;
        huddle-pairkit) url="ws://127.0.0.1:$port/pairkit"; extra=(--pairkit) ;;
      esac
      ;;
    peer)
      taskset -c "$SERVER_CPU" bash "$peerjs_sh" "$port" > "$log.server.log" 2>&1 &
      pid=$!
      url="ws://127.0.0.1:$port/"
      extra=(--peerjs)
      ;;
    uws)
      taskset -c "$SERVER_CPU" bash "$uws_sh" "$port" > "$log.server.log" 2>&1 &
      pid=$!
      url="ws://127.0.0.1:$port"
      extra=(--peer-relay)
      ;;
  esac
  current_pid=$pid
  # The first uWS start installs the npm package: allow for it.
  if ! wait_listen "$port" "$pid" 300; then
    echo "error: $label did not start (see $log.server.log)" >&2
    line="setup_ok=0 error=server_did_not_start"
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    return
  fi
  local aff_before aff_after rc=0
  aff_before=$(affinity_violations "$pid")
  [ -z "${BATCH_US:-}" ] || extra+=(--batch-us "$BATCH_US")
  line=$(taskset -c "$LOADGEN_CPU" "$loadgen_bin" --url "$url" "${extra[@]}" --server-pid "$pid" -q \
    "$@" 2> "$log.loadgen.log") || rc=$?
  aff_after=$(affinity_violations "$pid")
  local alive=1
  kill -0 "$pid" 2>/dev/null || alive=0
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  current_pid=""
  [ -n "$line" ] || line="setup_ok=0 error=loadgen_rc_$rc"
  [ -z "$aff_before$aff_after" ] || line="$line affinity_bad=${aff_before// /}${aff_after// /}"
  [ $alive = 1 ] || line="$line server_died=1"
  [ -z "$noisy" ] || line="$line noisy_busy_pct=$noisy"
}

# Other load on the box during a run's window, in % of one core (box - server - loadgen).
other_load() {
  local b s c
  b=$(kv "$1" box_cpu_pct); s=$(kv "$1" server_cpu_pct); c=$(kv "$1" client_cpu_pct)
  if [ -n "$b" ] && [ -n "$s" ] && [ -n "$c" ]; then
    awk -v b="$b" -v s="$s" -v c="$c" 'BEGIN{printf "%.0f", b - s - c}'
  else
    echo 0
  fi
}

# run_one: run_once, again (up to RETRIES times) while other load disturbed the window.
# Appends "SCENARIO|LABEL|summary" to $results.
run_one() {
  local try o
  for ((try = 0; ; try++)); do
    run_once "$@"
    o=$(other_load "$line")
    if [ "$o" -le "$OTHER_MAX" ] || [ "$try" -ge "$RETRIES" ]; then break; fi
    echo "note: $1 ($4): other load ${o}% of a core during the window; running it again" >&2
    echo "$4|$1 (discarded: other load ${o}%)|$line" >> "$results"
  done
  echo "$4|$1|$line" >> "$results"
}

# Field KEY of a summary line (empty when absent).
kv() { tr ' ' '\n' <<< "$1" | sed -n "s/^$2=//p" | head -1; }

# --- tables --------------------------------------------------------------------------------

# awk-evaluated condition on numbers: cond EXPR var=value...
num() { local e=$1; shift; awk "$@" "BEGIN{exit !($e)}"; }

notes_of() {
  local l=$1 n="" r c e sc o
  [ "$(kv "$l" setup_ok)" = 1 ] || n="$n setup-failed($(kv "$l" ready)/$(kv "$l" conns)-ready)"
  r=$(kv "$l" ratio); c=$(kv "$l" client_cpu_pct); e=$(kv "$l" errors)
  if [ -n "$r" ] && num "r < 0.99" -v r="$r"; then n="$n ratio<0.99"; fi
  if [ -n "$c" ] && num "c >= 70" -v c="$c"; then n="$n loadgen>=70%"; fi
  if [ -n "$e" ] && [ "$e" != 0 ]; then n="$n errors=$e"; fi
  local f lost; f=$(kv "$l" failed); lost=$(kv "$l" lost)
  if [ -n "$f" ] && [ "$f" != 0 ]; then n="$n conns-failed-in-setup=$f"; fi
  if [ -n "$lost" ] && [ "$lost" != 0 ]; then n="$n conns-lost=$lost"; fi
  sc=$(kv "$l" server_cpus)
  if [ -n "$sc" ] && [ "$sc" != "$SERVER_CPU" ] && [ "$sc" != - ]; then n="$n server-ran-on-cpu:$sc"; fi
  if [ -n "$(kv "$l" affinity_bad)" ]; then n="$n affinity:$(kv "$l" affinity_bad)"; fi
  if [ -n "$(kv "$l" server_died)" ]; then n="$n server-died"; fi
  o=$(other_load "$l")
  if [ "$o" -gt "$OTHER_MAX" ]; then n="$n other-load=${o}%"; fi
  if [ -n "$(kv "$l" noisy_busy_pct)" ]; then n="$n noisy-start"; fi
  local pe; pe=$(kv "$l" pairkit_errors)
  if [ -n "$pe" ] && [ "$pe" != none ]; then n="$n system.error:$pe"; fi
  # --pairkit: the host's input latency (a phone's send to its host's receive).
  if [ -n "$(kv "$l" inputs)" ] && [ "$(kv "$l" inputs)" != 0 ]; then
    n="$n host-input-p50/p99=$(kv "$l" input_p50_us)/$(kv "$l" input_p99_us)us"
  fi
  echo "${n# }"
}

# Median of the numbers given as arguments.
median() {
  printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'
}

table_header() { # scenario description [ratio column title]
  printf '\n== %s: %s\n' "$1" "$2"
  printf '%-21s %10s %7s %15s %11s %12s %9s %8s %10s %9s  %s\n' \
    server "deliv/s" ratio "p50/p99 us" "srv us/msg" "user us/msg" "peak RSS" "lg CPU" "lg us/msg" "${3:-vs uWS}" notes
}

table_row() { # label line peer_us
  local l=$2 peer=$3 us vs="-" rss
  us=$(kv "$l" server_us_per_msg)
  if [ -n "$peer" ] && [ -n "$us" ] && [ "$peer" != 0 ] && [ "$us" != 0 ]; then
    vs=$(awk -v a="$us" -v b="$peer" 'BEGIN{printf "%.2fx", a / b}')
  fi
  rss=$(kv "$l" server_peak_rss_kb)
  [ -z "$rss" ] || rss=$(awk -v k="$rss" 'BEGIN{printf "%.1f MB", k / 1024}')
  printf '%-21s %10s %7s %15s %11s %12s %9s %8s %10s %9s  %s\n' "$1" \
    "$(kv "$l" delivered_per_s)" "$(kv "$l" ratio)" "$(kv "$l" p50_us)/$(kv "$l" p99_us)" \
    "${us:--}" "$(kv "$l" server_user_us_per_msg)" "${rss:--}" "$(kv "$l" client_cpu_pct)%" \
    "$(kv "$l" client_us_per_msg)" "$vs" \
    "$(notes_of "$l")"
}

# Runs every server for one scenario and prints its table.
# compare SCENARIO DESCRIPTION FLUSH_LIST -- loadgen args...
# With ROUNDS > 1 every server runs once per round, in turn, and each huddle row is
# compared with the peer of its own round; a last line gives the median ratio per row.
compare() {
  local scen=$1 desc=$2 flushes=$3; shift 4
  local labels=() lines=() peers=() f r round
  for ((r = 1; r <= ROUNDS; r++)); do
    round=""
    [ "$ROUNDS" = 1 ] || round=" #$r"
    local peer_us=""
    for f in $flushes; do
      local label=huddle
      [ "$f" = 0 ] || label="huddle f=$f"
      run_one "$label$round" huddle "$f" "$scen" -- "$@"
      labels+=("$label$round"); lines+=("$line"); peers+=("")
    done
    local first=$(( ${#labels[@]} - $(wc -w <<< "$flushes") ))
    for p in $PEERS; do
      run_one "$p$round" "$p" 0 "$scen" -- "$@"
      labels+=("$p$round"); lines+=("$line"); peers+=("")
      [ "$p" = uws ] && peer_us=$(kv "$line" server_us_per_msg)
    done
    local i
    for ((i = first; i < ${#labels[@]}; i++)); do peers[$i]=$peer_us; done
  done
  table_header "$scen" "$desc"
  local i
  for i in "${!labels[@]}"; do
    table_row "${labels[$i]}" "${lines[$i]}" "${peers[$i]}"
  done
  if [ "$ROUNDS" -gt 1 ] && [ -n "$PEERS" ]; then
    for f in $flushes; do
      local label=huddle ratios=()
      [ "$f" = 0 ] || label="huddle f=$f"
      for i in "${!labels[@]}"; do
        [[ "${labels[$i]}" == "$label #"* ]] || continue
        local us; us=$(kv "${lines[$i]}" server_us_per_msg)
        [ -n "$us" ] && [ -n "${peers[$i]}" ] && [ "${peers[$i]}" != 0 ] || continue
        ratios+=("$(awk -v a="$us" -v b="${peers[$i]}" 'BEGIN{printf "%.3f", a / b}')")
      done
      [ ${#ratios[@]} -gt 0 ] || continue
      printf '%-17s median of %d rounds: %.2fx uWS (rounds: %s)\n' "$label" "${#ratios[@]}" \
        "$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END{print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')" \
        "${ratios[*]}"
    done
  fi
}

# Two servers (or two modes of one) side by side, ROUNDS rounds in turn, and the ratio of
# their server CPU per delivered message (test / base), per round and the median.
# pair SCENARIO DESCRIPTION BASE_LABEL BASE_KIND TEST_LABEL TEST_KIND RATIO_TITLE -- loadgen args...
# The arrays pair_base_args and pair_test_args (empty unless set) add loadgen args for one
# side only (e.g. different rates for two shapes with the same deliveries/s).
pair_base_args=(); pair_test_args=()
pair() {
  local scen=$1 desc=$2 bl=$3 bk=$4 tl=$5 tk=$6 title=$7; shift 8
  local labels=() lines=() peers=() ratios=() r round b t
  local in50=() in99=()
  for ((r = 1; r <= ROUNDS; r++)); do
    round=""
    [ "$ROUNDS" = 1 ] || round=" #$r"
    run_one "$bl$round" "$bk" 0 "$scen" -- "$@" "${pair_base_args[@]}"; b=$line
    run_one "$tl$round" "$tk" 0 "$scen" -- "$@" "${pair_test_args[@]}"; t=$line
    if [ -n "$(kv "$t" inputs)" ] && [ "$(kv "$t" inputs)" != 0 ]; then
      in50+=("$(kv "$t" input_p50_us)"); in99+=("$(kv "$t" input_p99_us)")
    fi
    labels+=("$bl$round" "$tl$round"); lines+=("$b" "$t")
    peers+=("" "$(kv "$b" server_us_per_msg)")
    local bu tu; bu=$(kv "$b" server_us_per_msg); tu=$(kv "$t" server_us_per_msg)
    if [ -n "$bu" ] && [ -n "$tu" ] && [ "$bu" != 0 ]; then
      ratios+=("$(awk -v a="$tu" -v b="$bu" 'BEGIN{printf "%.3f", a / b}')")
    fi
  done
  table_header "$scen" "$desc" "$title"
  local i
  for i in "${!labels[@]}"; do
    table_row "${labels[$i]}" "${lines[$i]}" "${peers[$i]}"
  done
  if [ ${#ratios[@]} -gt 0 ]; then
    printf '%-17s / %s server CPU per delivered message: median of %d rounds %.2fx (rounds: %s)\n' \
      "$tl" "$bl" "${#ratios[@]}" \
      "$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END{print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')" \
      "${ratios[*]}"
  fi
  if [ ${#in50[@]} -gt 0 ]; then
    printf '%-17s host input latency (phone send -> host receive): median of %d rounds p50 %s us, p99 %s us (rounds p50: %s; p99: %s)\n' \
      "$tl" "${#in50[@]}" "$(median "${in50[@]}")" "$(median "${in99[@]}")" "${in50[*]}" "${in99[*]}"
  fi
}

# --- scenarios -----------------------------------------------------------------------------

common=(--duration "$DURATION" --warmup "$WARMUP" --size 64)
if [ $quick = 1 ]; then
  lobby=(--conns 200 --room 8); pairs=(--conns 200); pk=(--conns 198 --room 9)
  fan=(--conns 200 --room 10); big=(--conns 200 --room 50)
  huge=(--conns 400 --room 400 --senders 20); idle_conns=500
else
  lobby=(--conns 1000 --room 8); pairs=(--conns 1000); pk=(--conns 999 --room 9)
  fan=(--conns 1000 --room 10); big=(--conns 1000 --room 50)
  huge=(--conns 5000 --room 5000 --senders 20); idle_conns=5000
fi

scenario_idle() {
  local labels=() lines=() p
  local args=(--conns "$idle_conns" --room 10 --rate 0 --duration "$DURATION" --warmup 1)
  run_one huddle huddle 0 idle -- "${args[@]}"
  labels+=(huddle); lines+=("$line")
  for p in $PEERS; do
    run_one "$p" "$p" 0 idle -- "${args[@]}"
    labels+=("$p"); lines+=("$line")
  done
  printf '\n== idle: %s connections handshaken and in rooms of 10, silent; RSS per connection = (RSS with conns - RSS at start) / conns\n' "$idle_conns"
  printf '%-14s %8s %12s %14s %12s %12s %10s  %s\n' server conns "RSS start" "RSS w/ conns" "B per conn" "peak RSS" "idle CPU" notes
  local i l
  for i in "${!labels[@]}"; do
    l=${lines[$i]}
    printf '%-14s %8s %12s %14s %12s %12s %10s  %s\n' "${labels[$i]}" "$(kv "$l" ready)" \
      "$(awk -v k="$(kv "$l" server_rss_start_kb)" 'BEGIN{printf "%.1f MB", k/1024}')" \
      "$(awk -v k="$(kv "$l" server_rss_kb)" 'BEGIN{printf "%.1f MB", k/1024}')" \
      "$(kv "$l" server_rss_per_conn_b)" \
      "$(awk -v k="$(kv "$l" server_peak_rss_kb)" 'BEGIN{printf "%.1f MB", k/1024}')" \
      "$(kv "$l" server_cpu_pct)%" "$(notes_of "$l")"
  done
}

# Raises the fanout rate until the ratio drops below 0.99 (or errors), per server.
declare -A sat_est=()
scenario_saturate() {
  local kinds=() p
  for f in $HUDDLE_FLUSH; do kinds+=("huddle:$f"); done
  for p in $PEERS; do kinds+=("$p:0"); done
  printf '\n== saturate: fanout shape (%s), rate raised until ratio < 0.99; est. ceiling = deliv/s / server CPU share\n' "${fan[*]}"
  printf '%-14s %6s %10s %7s %15s %11s %9s %9s %12s  %s\n' server rate "deliv/s" ratio "p50/p99 us" "srv us/msg" "srv CPU" "lg CPU" "est/core" notes
  local k summary=()
  for k in "${kinds[@]}"; do
    local kind=${k%%:*} f=${k#*:} label rate best="" best_est="" best_rate="-" how=""
    label=$kind; [ "$kind" != huddle ] || [ "$f" = 0 ] || label="huddle f=$f"
    for rate in $SAT_RATES; do
      run_one "$label" "$kind" "$f" saturate -- "${fan[@]}" --rate "$rate" --size 64 \
        --duration "$SAT_DURATION" --warmup "$SAT_WARMUP"
      local l=$line r c s d est
      r=$(kv "$l" ratio); c=$(kv "$l" client_cpu_pct); s=$(kv "$l" server_cpu_pct); d=$(kv "$l" delivered_per_s)
      est=-
      if [ -n "$s" ] && [ -n "$d" ] && num "s > 0" -v s="$s"; then
        est=$(awk -v d="$d" -v s="$s" 'BEGIN{printf "%.0f", d / (s / 100)}')
      fi
      printf '%-14s %6s %10s %7s %15s %11s %9s %9s %12s  %s\n' "$label" "$rate" "${d:--}" "${r:--}" \
        "$(kv "$l" p50_us)/$(kv "$l" p99_us)" "$(kv "$l" server_us_per_msg)" "${s:--}%" "${c:--}%" "$est" \
        "$(notes_of "$l")"
      if [ "$(kv "$l" setup_ok)" != 1 ] || [ -z "$r" ] || num "r < 0.99" -v r="$r" \
        || [ "$(kv "$l" errors)" != 0 ]; then
        if [ -n "$c" ] && num "c >= 70" -v c="$c"; then
          how="loadgen at ${c}% with ratio < 0.99 at rate $rate"
        else
          how="ratio < 0.99 at rate $rate"
        fi
        break
      fi
      # The highest rate that still delivers ≥ 0.99 gives the estimate (server CPU per
      # message stays meaningful even when the loadgen is past 70%).
      best=$d; best_est=$est; best_rate=$rate
      sat_est["$label|$rate"]=$est
      if num "c >= 70" -v c="$c"; then
        how="loadgen at ${c}% first"
        break
      fi
    done
    [ -n "$how" ] || how="top of SAT_RATES reached"
    if [[ "$how" == loadgen* ]] || [[ "$how" == top* ]]; then
      summary+=("$(printf '%-14s ceiling ~ %s deliveries/s per core, ESTIMATED (deliv/s / server CPU share at rate %s: %s/s; %s) ~ %s players/core' \
        "$label" "${best_est:--}" "$best_rate" "${best:--}" "$how" "$(awk -v e="${best_est:-0}" 'BEGIN{printf "%.0f", e/200}')")")
    else
      summary+=("$(printf '%-14s ceiling = %s deliveries/s, measured (last rate >= 0.99: %s; %s; estimate there %s/core) ~ %s players/core' \
        "$label" "${best:--}" "$best_rate" "$how" "${best_est:--}" "$(awk -v e="${best:-0}" 'BEGIN{printf "%.0f", e/200}')")")
    fi
  done
  printf '%s\n' "${summary[@]}"
  # Estimates grow with the rate (more frames per write), so servers are compared at the
  # same rate: the highest one both delivered at >= 0.99.
  local h p r common
  for h in "${kinds[@]}"; do
    [ "${h%%:*}" = huddle ] || continue
    local hl=huddle; [ "${h#*:}" = 0 ] || hl="huddle f=${h#*:}"
    for p in $PEERS; do
      common=""
      for r in $SAT_RATES; do
        [ -n "${sat_est["$hl|$r"]:-}" ] && [ -n "${sat_est["$p|$r"]:-}" ] && common=$r
      done
      [ -n "$common" ] || continue
      printf '%-14s vs %s at rate %s (highest both ran): %s vs %s per core = %sx\n' "$hl" "$p" "$common" \
        "${sat_est["$hl|$common"]}" "${sat_est["$p|$common"]}" \
        "$(awk -v a="${sat_est["$hl|$common"]}" -v b="${sat_est["$p|$common"]}" 'BEGIN{printf "%.2f", a/b}')"
    done
  done
}

echo "compare $(date -u +%FT%TZ): huddle (1 shard, CPU $SERVER_CPU, codec $CODEC) vs [${PEERS:-none}]; loadgen on CPU $LOADGEN_CPU (poll tick ${BATCH_US:-100} us); ${DURATION}s measured + ${WARMUP}s warm-up; out: $OUT"
for s in "${scenarios[@]}"; do
  case "$s" in
    fanout)   compare fanout "${fan[*]}, 20 msg/s of 64 B each, echo to all members" "$HUDDLE_FLUSH" -- "${fan[@]}" --rate 20 "${common[@]}" ;;
    fanout10) compare fanout10 "${fan[*]}, 10 msg/s" "$HUDDLE_FLUSH" -- "${fan[@]}" --rate 10 "${common[@]}" ;;
    fanout40) compare fanout40 "${fan[*]}, 40 msg/s" "$HUDDLE_FLUSH" -- "${fan[@]}" --rate 40 "${common[@]}" ;;
    flush)    compare flush "fanout (${fan[*]}, 20 msg/s) with huddle flush_interval_us 0 and 1000" "0 1000" -- "${fan[@]}" --rate 20 "${common[@]}" ;;
    bigroom)  compare bigroom "${big[*]}, 2 msg/s each" "$HUDDLE_FLUSH" -- "${big[@]}" --rate 2 "${common[@]}" ;;
    hugeroom) compare hugeroom "${huge[*]} (one room), 1 msg/s per sender" "$HUDDLE_FLUSH" -- "${huge[@]}" --rate 1 --setup-timeout 20 "${common[@]}" ;;
    idle)     scenario_idle ;;
    saturate) scenario_saturate ;;
    lobby)    pair lobby "${lobby[*]}, 20 msg/s of 64 B each: rooms echo_room (to all 8) vs cloudlink relay lobbies (G_MSG to the 7 others)" \
                "huddle rooms" huddle "huddle lobby" huddle-cl5 "vs rooms" -- "${lobby[@]}" --rate 20 "${common[@]}" ;;
    peerjs)   if [ ! -f "$peerjs_sh" ]; then echo "warning: $peerjs_sh not found: skipping peerjs" >&2; continue; fi
              pair peerjs "${pairs[*]} (pairs), OFFER or ANSWER + 4 CANDIDATEs in turn, $PEERJS_RATE per peer per second (64 B of SDP / candidate each)" \
                "peer 1.0.2" peer "huddle broker" huddle-peerjs "vs peer" -- "${pairs[@]}" --rate "$PEERJS_RATE" "${common[@]}" ;;
    pairkit)  pair_base_args=(--rate "$PAIRKIT_ROOMS_RATE")
              pair_test_args=(--rate "$PAIRKIT_RATE" --host-rate "$PAIRKIT_HOST_RATE")
              pair pairkit "${pk[*]}, 64 B of data each: rooms echo_room at $PAIRKIT_ROOMS_RATE msg/s per member (to all 9) vs pairkit sessions of 1 host + 8 phones (phones input.widget_event at $PAIRKIT_RATE/s to the host, the host control.broadcast at $PAIRKIT_HOST_RATE/s to its 8 phones)" \
                "huddle rooms 9@${PAIRKIT_ROOMS_RATE}/s" huddle "huddle pairkit" huddle-pairkit "vs rooms" -- "${pk[@]}" "${common[@]}"
              pair_base_args=(); pair_test_args=() ;;
    *) echo "unknown scenario $s (fanout fanout10 fanout40 flush bigroom hugeroom idle saturate lobby peerjs pairkit)" >&2; exit 2 ;;
  esac
done
echo
echo "raw summary lines: $results"
