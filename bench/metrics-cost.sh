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
  sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
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

for tool in dnsperf dig node; do
  command -v "$tool" >/dev/null || { echo "$tool not found (Debian: apt-get install dnsperf bind9-dnsutils nodejs)" >&2; exit 1; }
done

zone="$root/zones/examples/example.test.zone"
queries="$here/queries.txt"
work="$(mktemp -d "${TMPDIR:-/tmp}/vigil-metrics-cost.XXXXXX")"
server_pid=""

stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
cleanup() {
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# Same pinning as run.sh: server on CPU 0, dnsperf on CPU 1.
server_pin=()
perf_pin=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  server_pin=(taskset -c 0)
  perf_pin=(taskset -c 1)
fi

if [ ! -s "$queries" ] || [ "$zone" -nt "$queries" ] || [ "$here/make-queries.mjs" -nt "$queries" ]; then
  node "$here/make-queries.mjs" "$zone" > "$queries"
fi

answers() {
  dig +short +time=1 +tries=1 @127.0.0.1 -p "$port" example.test SOA 2>/dev/null | grep -q '^[^;].* [0-9]\+ [0-9]\+ [0-9]\+ [0-9]\+ [0-9]\+$'
}
if answers; then
  echo "something already answers on 127.0.0.1:$port; stop it or pass --port" >&2
  exit 1
fi

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
  [ "$variant" = on ] && flag=(--metrics)
  # tsx transpiles once at start-up; the answering code then runs as plain JS, as from dist/.
  (cd "$root" && exec "${server_pin[@]}" node --import tsx bench/metrics-serve.ts --config "$work/vigil.yaml" "${flag[@]}") > "$work/$variant.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 150); do
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/$variant.log" >&2; return 1; }
    answers && break
    sleep 0.1
  done
  answers || { echo "server ($variant) did not answer within 15 s" >&2; cat "$work/$variant.log" >&2; return 1; }
  local t0 t1
  t0="$(cpu_ticks "$server_pid")"
  "${perf_pin[@]}" dnsperf -s 127.0.0.1 -p "$port" -d "$queries" -l "$duration" -c "$clients" > "$work/$variant.dnsperf" 2>&1 || {
    cat "$work/$variant.dnsperf" >&2
    return 1
  }
  t1="$(cpu_ticks "$server_pid")"
  stop_server
  cpu="$(awk -v t="$((t1 - t0))" -v hz="$tck" '/Queries completed:/ { printf "%.1f", t * 1e6 / hz / $3 }' "$work/$variant.dnsperf")"
  result="$(awk '/Queries per second:/ { printf "%.0f", $4 }' "$work/$variant.dnsperf")"
  lost="$(awk '/Queries lost:/ { gsub(/[()%]/, "", $4); print $4 }' "$work/$variant.dnsperf")"
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

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
m_off="$(median "${off[@]}")"
m_on="$(median "${on[@]}")"
printf 'median   off %8s q/s   on %8s q/s   ratio on/off %s\n' "$m_off" "$m_on" "$(awk -v a="$m_on" -v b="$m_off" 'BEGIN { printf "%.3f", a / b }')"
c_off="$(median "${off_cpu[@]}")"
c_on="$(median "${on_cpu[@]}")"
printf 'median   off %6s µs CPU/query   on %6s µs CPU/query   ratio on/off %s\n' "$c_off" "$c_on" "$(awk -v a="$c_on" -v b="$c_off" 'BEGIN { printf "%.3f", a / b }')"
