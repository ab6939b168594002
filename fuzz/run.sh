#!/usr/bin/env bash
# Fuzzes each target for SECONDS with cargo-fuzz: `fuzz/run.sh SECONDS [TARGET...]`, every
# target of `cargo fuzz list` when none is named.
#
# - Installs cargo-fuzz (pinned) when `cargo fuzz` is missing.
# - Toolchain: nightly when rustup has it, else the default (stable) toolchain with
#   RUSTC_BOOTSTRAP=1, which lets stable rustc take cargo-fuzz's `-Z` flags.
#   HUDDLE_FUZZ_TOOLCHAIN=<name> picks one (e.g. `stable`, to try that path beside a nightly).
# - Sanitizer: AddressSanitizer when a target built with it runs; else `--sanitizer none`
#   (the panics that carry the properties still crash the target). It says which.
# - Builds every target once up front, so build time is not charged to any target's seconds.
# - Each target's corpus is fuzz/corpus/<t> (created, git-ignored), seeded from
#   fuzz/seeds/<t>; the dictionary fuzz/<dialect>.dict is passed to the dialect's targets.
# - One summary line per target (runs, exec/s, corpus size, crash) and a total. A crash (or
#   timeout, OOM, leak) prints its artifact and how to reproduce it, is copied to
#   fuzz/regressions/<t>/ to be minimised and committed, and the script exits 1 at the end.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TERM_COLOR=never

CARGO_FUZZ_VERSION=0.13.2
usage="usage: fuzz/run.sh SECONDS [TARGET...]"
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
seconds=$1
shift
[[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -gt 0 ] || { echo "$usage" >&2; exit 2; }

[ -f "$HOME/.cargo/env" ] && source "$HOME/.cargo/env"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

# The toolchain: `cargo +<name>` when one is named or nightly is installed.
toolchain=()
if [ -n "${HUDDLE_FUZZ_TOOLCHAIN:-}" ]; then
  toolchain=("+$HUDDLE_FUZZ_TOOLCHAIN")
elif command -v rustup >/dev/null 2>&1 && rustup toolchain list | grep -q '^nightly' &&
  cargo +nightly --version >/dev/null 2>&1; then
  toolchain=(+nightly)
fi
if [ "${toolchain[*]-}" = "+nightly" ] || [[ "${toolchain[*]-}" == +nightly-* ]]; then
  echo "== toolchain: ${toolchain[0]#+}"
else
  export RUSTC_BOOTSTRAP=1
  echo "== toolchain: $(cargo "${toolchain[@]}" --version) with RUSTC_BOOTSTRAP=1 (no nightly)"
fi
fuzz() { cargo "${toolchain[@]}" fuzz "$@"; }

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(fuzz list)
fi
[ ${#targets[@]} -gt 0 ] || { echo "no fuzz targets" >&2; exit 2; }

# AddressSanitizer needs its runtime (shipped with the toolchain's std): build the first
# target with it and run it on no input; if either fails, fuzz without a sanitizer.
probe=${targets[0]}
probe_log=$(mktemp)
sanitizer=()
if fuzz build "$probe" >"$probe_log" 2>&1 &&
  fuzz run "$probe" "$(mktemp -d)" -- -runs=0 >>"$probe_log" 2>&1; then
  echo "== sanitizer: address (a target built with ASan runs)"
else
  sanitizer=(--sanitizer none)
  echo "== sanitizer: none (building or running $probe with ASan failed; see $probe_log)"
  tail -5 "$probe_log" | sed 's/^/   /'
fi

echo "== cargo fuzz build ${sanitizer[*]-} (every target, once)"
for t in "${targets[@]}"; do
  fuzz build "${sanitizer[@]}" "$t"
done

dict_of() {
  case "$1" in
    sim_session | rooms_envelope) echo rooms.dict ;;
    cloudlink_frames | peerjs_frames) echo cloudlink.dict ;;
    pairkit_*) echo pairkit.dict ;;
  esac
}

total_runs=0
crashed=()
summary=()
for t in "${targets[@]}"; do
  echo "== $t: ${seconds} s"
  mkdir -p "corpus/$t" "artifacts/$t"
  args=(-max_total_time="$seconds" -timeout=60 -print_final_stats=1)
  dict=$(dict_of "$t")
  [ -n "$dict" ] && args+=(-dict="$dict")
  seeds=()
  [ -d "seeds/$t" ] && seeds=("seeds/$t")
  before=$(ls "artifacts/$t" | sort)
  log="artifacts/$t.log"
  status=0
  fuzz run "${sanitizer[@]}" "$t" "corpus/$t" "${seeds[@]}" -- "${args[@]}" >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  corpus=$(ls "corpus/$t" | wc -l)
  new=$(comm -13 <(echo "$before") <(ls "artifacts/$t" | sort) | grep -v '^$' || true)
  crash=no
  if [ "$status" -ne 0 ] || [ -n "$new" ]; then
    crash=yes
    crashed+=("$t")
    tail -40 "$log" | sed 's/^/   /'
    if [ -z "$new" ]; then
      echo "   $t exited $status without an artifact (a build or run error): log in fuzz/$log"
    fi
    for a in $new; do
      mkdir -p "regressions/$t"
      cp "artifacts/$t/$a" "regressions/$t/$a"
      echo "   artifact: fuzz/artifacts/$t/$a (copied to fuzz/regressions/$t/$a: minimise, rename, commit)"
      echo "   show it:   (cd fuzz && cargo ${toolchain[*]-} fuzz fmt ${sanitizer[*]-} $t artifacts/$t/$a)"
      echo "   reproduce: (cd fuzz && cargo ${toolchain[*]-} fuzz run ${sanitizer[*]-} $t artifacts/$t/$a)"
      echo "   minimise:  (cd fuzz && cargo ${toolchain[*]-} fuzz tmin ${sanitizer[*]-} $t artifacts/$t/$a)"
      echo "   replay:    cargo test --test fuzz_replay $t"
    done
  fi
  total_runs=$((total_runs + ${runs:-0}))
  line=$(printf '%-20s runs %10s  exec/s %7s  corpus %5s  crash %s' "$t" "${runs:-?}" "${rate:-?}" "$corpus" "$crash")
  echo "$line"
  summary+=("$line")
done

echo "== summary (${seconds} s per target, sanitizer ${sanitizer[1]:-address})"
printf '%s\n' "${summary[@]}"
echo "total: ${#targets[@]} targets, $total_runs runs, ${#crashed[@]} crashed${crashed[*]:+: ${crashed[*]}}"
[ ${#crashed[@]} -eq 0 ]
