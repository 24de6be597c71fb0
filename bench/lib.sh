# shellcheck shell=bash
# Shell functions shared by bench/run.sh, bench/metrics-cost.sh and
# bench/peers/run.sh. Sourced, never run. The sourcing script sets:
#
#   root      the repository
#   port      where the server under test listens (127.0.0.1)
#   work      a temporary directory of its own (logs and dnsperf output go there)
#   queries   the dnsperf query file          (run_dnsperf, ensure_queries)
#   duration  seconds per dnsperf run         (run_dnsperf)
#   clients   dnsperf -c                      (run_dnsperf)
#   rate      dnsperf -Q, empty for "as fast as answers return" (run_dnsperf)
#
# and calls bench_trap once, so that a server still running when the script
# exits or is interrupted is stopped and $work removed (bench_keep=1 keeps it).

bench_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
server_pid=""
bench_keep=0
# Extra dnsperf arguments for every run (peers adds -q).
dnsperf_extra=()

require_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$tool not found (Debian: apt-get install dnsperf bind9-dnsutils nodejs)" >&2; exit 1; }
  done
}

# Pin the server and the load generator to different CPUs when there are two,
# so they do not steal each other's time slices and the numbers repeat.
server_pin=()
perf_pin=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  server_pin=(taskset -c 0)
  perf_pin=(taskset -c 1)
fi

# Regenerates the query file when the zone or its generator is newer.
ensure_queries() {
  local zone="$root/zones/examples/example.test.zone"
  if [ ! -s "$queries" ] || [ "$zone" -nt "$queries" ] || [ "$bench_here/make-queries.mjs" -nt "$queries" ]; then
    node "$bench_here/make-queries.mjs" "$zone" > "$queries"
  fi
}

# Builds when dist/ is missing or older than any TypeScript source it is made from.
ensure_build() {
  local entry="$root/dist/cli/vigil.js"
  if [ ! -f "$entry" ] || [ -n "$(find "$root/cli" "$root/server" "$root/zones" -name '*.ts' -newer "$entry" -print -quit)" ]; then
    echo "building (npx tsc -p tsconfig.json)..." >&2
    (cd "$root" && npx tsc -p tsconfig.json)
  fi
}

# True when something answers the example zone's SOA on 127.0.0.1:PORT
# (default $port). dig +short prints its errors (";; connection refused") on
# stdout too, so look for a real SOA line.
answers() {
  dig +short +time=1 +tries=1 @127.0.0.1 -p "${1:-$port}" example.test SOA 2>/dev/null | grep -q '^[^;].* [0-9]\+ [0-9]\+ [0-9]\+ [0-9]\+ [0-9]\+$'
}

refuse_busy_port() {
  if answers "${1:-$port}"; then
    echo "something already answers on 127.0.0.1:${1:-$port}; stop it or pass --port" >&2
    exit 1
  fi
}

# start_server NAME COMMAND...: runs COMMAND in the background from $root,
# output in $work/NAME.log, and sets server_pid. With setsid the server leads
# a process group of its own, so that stop_pid also reaches the children a
# server forks (NSD's server processes, Vigil's workers) even if the parent
# dies without taking them along. Not called in $(...): server_pid must be
# set in this shell.
start_server() {
  local name="$1"
  shift
  local group=()
  command -v setsid >/dev/null && group=(setsid)
  (cd "$root" && exec "${group[@]}" "$@") > "$work/$name.log" 2>&1 &
  server_pid=$!
}

# stop_pid PID: TERM, up to 3 s for the process and its group to go, then KILL.
stop_pid() {
  local pid="$1"
  [ -n "$pid" ] || return 0
  # The group exists only when start_server could use setsid; signal the
  # group when it does, the process alone otherwise.
  local target=("$pid")
  kill -0 -- "-$pid" 2>/dev/null && target=(-- "-$pid")
  if kill -0 "${target[@]}" 2>/dev/null; then
    kill -TERM "${target[@]}" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "${target[@]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${target[@]}" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

stop_server() {
  stop_pid "$server_pid"
  server_pid=""
}

bench_cleanup() {
  stop_server
  if [ "$bench_keep" = 1 ]; then
    echo "raw output kept in $work" >&2
  else
    rm -rf "$work"
  fi
}

bench_trap() {
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# wait_ready NAME [PORT] [TENTHS]: polls until the server answers the SOA on
# PORT (default $port), for up to TENTHS × 0.1 s (default 100). Fails with
# the server's log when it exits or never answers.
wait_ready() {
  local name="$1" p="${2:-$port}" tenths="${3:-100}"
  for _ in $(seq 1 "$tenths"); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "$name exited during start-up; its log:" >&2
      cat "$work/$name.log" >&2
      return 1
    fi
    if answers "$p"; then
      return 0
    fi
    sleep 0.1
  done
  echo "$name did not answer the SOA on 127.0.0.1:$p within $((tenths / 10)) s; its log:" >&2
  cat "$work/$name.log" >&2
  return 1
}

# run_dnsperf NAME: one dnsperf run against 127.0.0.1:$port, pinned with
# "${perf_pin[@]}" (empty it to leave dnsperf unpinned), raw output in
# $work/NAME.dnsperf; prints "qps avg_ms max_ms lost_pct".
run_dnsperf() {
  local name="$1"
  local args=(-s 127.0.0.1 -p "$port" -d "$queries" -l "$duration" -c "$clients" "${dnsperf_extra[@]}")
  [ -n "${rate:-}" ] && args+=(-Q "$rate")
  "${perf_pin[@]}" dnsperf "${args[@]}" > "$work/$name.dnsperf" 2>&1 || {
    cat "$work/$name.dnsperf" >&2
    return 1
  }
  dnsperf_stats "$work/$name.dnsperf"
}

# dnsperf_stats FILE: "qps avg_ms max_ms lost_pct" from dnsperf's statistics.
dnsperf_stats() {
  awk '
    /Queries per second:/ { qps = $4 }
    /Queries lost:/ { lost = $4; gsub(/[()%]/, "", lost) }
    /Average Latency \(s\):/ {
      avg = $4 * 1000
      max = $8; gsub(/[),]/, "", max); max = max * 1000
    }
    END { printf "%.0f %.3f %.3f %s\n", qps, avg, max, lost }
  ' "$1"
}

median() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
