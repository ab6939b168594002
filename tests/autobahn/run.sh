#!/usr/bin/env bash
# WebSocket conformance: the Autobahn fuzzingclient cases, run by kosoku (a native runner of
# the Autobahn TestSuite case files, from PyPI), against huddle's echo dialect at /echo, one
# case at a time (-p 1).
#
# Installs kosoku (pinned) into a private venv on its first run, starts the huddle binary
# given (debug or release) on a free port with tests/autobahn/huddle.toml (echo on, messages
# up to 16 MiB so that the 9.* cases are judged, not refused), runs the cases, reads the
# report (index.json), prints the count per outcome and fails when:
#   - any case is FAILED or ERROR, or its closing handshake is FAILED, WRONG CODE, UNCLEAN
#     or FAILED BY CLIENT;
#   - a 12.* or 13.* case (permessage-deflate, which huddle does not negotiate) is anything
#     but UNIMPLEMENTED, or a case outside them is UNIMPLEMENTED;
#   - the whole suite was asked for and fewer than all of its cases ran;
#   - huddle exited, or logged a panic, during the run.
# kosoku's own exit code is not used: it is 1 whenever a case is UNIMPLEMENTED.
#
# Usage: tests/autobahn/run.sh [target/debug/huddle]
#   AUTOBAHN_CASES="1.* 9.7.1"  select cases (kosoku -i globs; default: every case)
#   AUTOBAHN_EXCLUDE="9.*"      leave cases out (kosoku -x globs)
#   KOSOKU_VENV=DIR             the venv (default: <target dir>/kosoku-venv)
#   AUTOBAHN_REPORT=DIR         the report (default: <target dir>/autobahn-report; kept)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
bin=${1:-$target/debug/huddle}
kosoku_version=0.1.0
# The suite of kosoku 0.1.0: 517 cases, 216 of them 12.* and 13.*.
suite_cases=517
venv=${KOSOKU_VENV:-$target/kosoku-venv}
report=${AUTOBAHN_REPORT:-$target/autobahn-report}
[ -x "$bin" ] || { echo "autobahn: no huddle binary at $bin (cargo build --bin huddle)" >&2; exit 1; }

if ! "$venv/bin/kosoku" --help >/dev/null 2>&1 \
  || [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("kosoku"))' 2>/dev/null)" != "$kosoku_version" ]; then
  echo "autobahn: installing kosoku==$kosoku_version into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv" || { echo "autobahn: python3 -m venv failed (Debian: apt-get install -y python3-venv)" >&2; exit 1; }
  "$venv/bin/pip" install -q --disable-pip-version-check "kosoku==$kosoku_version"
fi

tmp=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# Port 0: the kernel picks a free port; huddle logs the one it bound.
"$bin" --config "$root/tests/autobahn/huddle.toml" > "$tmp/server.log" 2>&1 &
pid=$!
port=""
for _ in $(seq 100); do
  port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/server.log" | head -1)
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$tmp/server.log" >&2; echo "autobahn: huddle exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$port" ] || { cat "$tmp/server.log" >&2; echo "autobahn: huddle did not log its port" >&2; exit 1; }

args=(-m fuzzingclient -p 1 -o "$report")
for c in ${AUTOBAHN_CASES:-}; do args+=(-i "$c"); done
for c in ${AUTOBAHN_EXCLUDE:-}; do args+=(-x "$c"); done
rm -rf "$report"
url="ws://127.0.0.1:$port/echo"
echo "autobahn: kosoku ${args[*]} $url"
start=$(date +%s.%N)
set -f
"$venv/bin/kosoku" "${args[@]}" "$url" > "$tmp/kosoku.log" 2>&1 || true
set +f
end=$(date +%s.%N)

fail=0
if ! kill -0 "$pid" 2>/dev/null; then
  echo "autobahn: huddle exited during the run" >&2
  fail=1
fi
if grep -q "panicked" "$tmp/server.log"; then
  grep -A5 "panicked" "$tmp/server.log" >&2
  echo "autobahn: huddle panicked during the run" >&2
  fail=1
fi
if [ ! -f "$report/index.json" ]; then
  cat "$tmp/kosoku.log" >&2
  echo "autobahn: kosoku wrote no report" >&2
  exit 1
fi

full=0
[ -z "${AUTOBAHN_CASES:-}" ] && [ -z "${AUTOBAHN_EXCLUDE:-}" ] && full=1
python3 - "$report/index.json" "$start" "$end" "$full" "$suite_cases" <<'EOF' || fail=1
import collections, json, sys

index, start, end, full, suite = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1", int(sys.argv[5])
agents = json.load(open(index))
cases = {}
for results in agents.values():
    cases.update(results)

def key(case_id):
    return tuple(int(p) for p in case_id.split("."))

problems = []
counts = collections.Counter()
close_counts = collections.Counter()
for case_id in sorted(cases, key=key):
    r = cases[case_id]
    behavior, close = r["behavior"], r["behaviorClose"]
    counts[behavior] += 1
    close_counts[close] += 1
    deflate = case_id.split(".")[0] in ("12", "13")
    if deflate and behavior != "UNIMPLEMENTED":
        problems.append(f"{case_id}: {behavior} (permessage-deflate is not negotiated: must be UNIMPLEMENTED)")
    elif not deflate and behavior == "UNIMPLEMENTED":
        problems.append(f"{case_id}: UNIMPLEMENTED")
    elif behavior in ("FAILED", "ERROR"):
        problems.append(f"{case_id}: {behavior} ({r.get('reportfile', '')})")
    if close in ("FAILED", "WRONG CODE", "WRONG_CODE", "UNCLEAN", "FAILED BY CLIENT", "FAILED_BY_CLIENT"):
        problems.append(f"{case_id}: closing handshake {close} ({r.get('reportfile', '')})")
if full and len(cases) != suite:
    problems.append(f"{len(cases)} cases ran, the suite has {suite}")

order = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "ERROR"]
print(f"autobahn: {len(cases)} cases in {end - start:.1f} s: "
      + ", ".join(f"{k} {counts[k]}" for k in order if counts[k] or k in order[:4]))
print("autobahn: closing handshakes: " + ", ".join(f"{k} {v}" for k, v in sorted(close_counts.items())))
for b in ("NON-STRICT", "INFORMATIONAL"):
    ids = [c for c in sorted(cases, key=key) if cases[c]["behavior"] == b]
    if ids:
        print(f"autobahn: {b}: {' '.join(ids)}")
durations = sorted(((cases[c].get("duration", 0), c) for c in cases), reverse=True)
if durations:
    total_ms = sum(d for d, _ in durations)
    print(f"autobahn: case time: {total_ms / 1000:.1f} s in all, slowest "
          + ", ".join(f"{c} {d} ms" for d, c in durations[:3]))
for p in problems:
    print(f"autobahn: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
EOF

if [ "$fail" != 0 ]; then
  echo "autobahn: FAILED (report: $report/index.html)" >&2
  exit 1
fi
echo "autobahn: passed (report: $report/index.html)"
