#!/usr/bin/env bash
# What counting queries for /metrics costs: the same dnsperf load as
# bench/run.sh against bench/metrics-serve.ts with the metrics observer off
# and on, alternating, N rounds; prints every run's q/s and the server's CPU
# time per answered query (from /proc, so it holds up on a busy machine
# better than q/s does), the medians and the ratios on/off. Not a test:
# nothing asserts on the numbers.
#
#   bash bench/metrics-cost.sh [--rounds N] [--duration S] [--clients N] [--port P]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
port=5398
duration=10
clients=4
rounds=3

usage() {
  sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="${2:?--rounds needs a value}"; shift 2 ;;
    --duration) duration="${2:?--duration needs a value}"; shift 2 ;;
    --clients) clients="${2:?--clients needs a value}"; shift 2 ;;
    --port) port="${2:?--port needs a value}"; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "unknown argument: $1" >&2; usage 2 ;;
  esac
done

# shellcheck source=bench/lib.sh
. "$here/lib.sh"
require_tools dnsperf dig node

zone="$root/zones/examples/example.test.zone"
queries="$here/queries.txt"
work="$(mktemp -d "${TMPDIR:-/tmp}/vigil-metrics-cost.XXXXXX")"
bench_trap

ensure_queries
refuse_busy_port

cat > "$work/vigil.yaml" <<EOF
listen: ["127.0.0.1:$port"]
zones:
  - origin: example.test.
    file: "$zone"
EOF

# CPU time (user + system, in clock ticks) the server has used so far.
cpu_ticks() {
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}
tck="$(getconf CLK_TCK)"

# Runs one variant ("off" or "on") and sets $result to its q/s and $cpu to
# the server's CPU µs per answered query during the load. Not called in
# $(...): a subshell would not run the cleanup trap if it failed midway.
result=""
cpu=""
run_variant() {
  local variant="$1" flag=()
  local name="observer-$variant"
  [ "$variant" = on ] && flag=(--metrics)
  # Same pinning as run.sh (lib.sh): server on CPU 0, dnsperf on CPU 1.
  # tsx transpiles once at start-up; the answering code then runs as plain JS, as from dist/.
  start_server "$name" "${server_pin[@]}" node --import tsx bench/metrics-serve.ts --config "$work/vigil.yaml" "${flag[@]}"
  wait_ready "$name" "$port" 150
  local t0 t1
  t0="$(cpu_ticks "$server_pid")"
  run_dnsperf "$name" > /dev/null
  t1="$(cpu_ticks "$server_pid")"
  stop_server
  cpu="$(awk -v t="$((t1 - t0))" -v hz="$tck" '/Queries completed:/ { printf "%.1f", t * 1e6 / hz / $3 }' "$work/$name.dnsperf")"
  result="$(awk '/Queries per second:/ { printf "%.0f", $4 }' "$work/$name.dnsperf")"
  lost="$(awk '/Queries lost:/ { gsub(/[()%]/, "", $4); print $4 }' "$work/$name.dnsperf")"
}

echo "dnsperf: $(wc -l < "$queries") query lines, ${duration}s, $clients clients, $rounds rounds alternating off/on${server_pin:+, server on cpu 0, dnsperf on cpu 1}" >&2
off=()
on=()
off_cpu=()
on_cpu=()
for i in $(seq 1 "$rounds"); do
  run_variant off; off+=("$result"); off_cpu+=("$cpu"); printf 'round %d  off %8s q/s   %6s µs CPU/query   lost %s%%\n' "$i" "$result" "$cpu" "$lost"
  run_variant on;  on+=("$result");  on_cpu+=("$cpu");  printf 'round %d  on  %8s q/s   %6s µs CPU/query   lost %s%%\n' "$i" "$result" "$cpu" "$lost"
done

m_off="$(median "${off[@]}")"
m_on="$(median "${on[@]}")"
printf 'median   off %8s q/s   on %8s q/s   ratio on/off %s\n' "$m_off" "$m_on" "$(awk -v a="$m_on" -v b="$m_off" 'BEGIN { printf "%.3f", a / b }')"
c_off="$(median "${off_cpu[@]}")"
c_on="$(median "${on_cpu[@]}")"
printf 'median   off %6s µs CPU/query   on %6s µs CPU/query   ratio on/off %s\n' "$c_off" "$c_on" "$(awk -v a="$c_on" -v b="$c_off" 'BEGIN { printf "%.3f", a / b }')"
