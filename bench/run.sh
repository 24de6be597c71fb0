#!/usr/bin/env bash
# Load-test Vigil with dnsperf on the example zone; optionally Knot DNS too,
# on the same zone, port and load, for a ratio. Not a test: numbers depend on
# the machine, so nothing asserts on them. See bench/README.md.
#
#   bash bench/run.sh [--peer knot] [--rate QPS] [--duration S] [--clients N] [--port P]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
port=5399
duration=10
clients=4
rate=""
peer=""

usage() {
  sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --peer) peer="${2:?--peer needs a value}"; shift 2 ;;
    --rate) rate="${2:?--rate needs a value}"; shift 2 ;;
    --duration) duration="${2:?--duration needs a value}"; shift 2 ;;
    --clients) clients="${2:?--clients needs a value}"; shift 2 ;;
    --port) port="${2:?--port needs a value}"; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "unknown argument: $1" >&2; usage 2 ;;
  esac
done
if [ -n "$peer" ] && [ "$peer" != knot ]; then
  echo "--peer: only 'knot' is supported" >&2
  exit 2
fi

for tool in dnsperf dig node; do
  command -v "$tool" >/dev/null || { echo "$tool not found (Debian: apt-get install dnsperf bind9-dnsutils nodejs)" >&2; exit 1; }
done

zone="$root/zones/examples/example.test.zone"
queries="$here/queries.txt"
work="$(mktemp -d "${TMPDIR:-/tmp}/vigil-bench.XXXXXX")"
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

# Pin the server and the load generator to different CPUs when there are two,
# so they do not steal each other's time slices and the numbers repeat.
server_pin=()
perf_pin=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  server_pin=(taskset -c 0)
  perf_pin=(taskset -c 1)
fi

# Build when dist/ is missing or older than any TypeScript source it is made from.
entry="$root/dist/cli/vigil.js"
if [ ! -f "$entry" ] || [ -n "$(find "$root/cli" "$root/server" "$root/zones" -name '*.ts' -newer "$entry" -print -quit)" ]; then
  echo "building (npx tsc -p tsconfig.json)..." >&2
  (cd "$root" && npx tsc -p tsconfig.json)
fi

if [ ! -s "$queries" ] || [ "$zone" -nt "$queries" ] || [ "$here/make-queries.mjs" -nt "$queries" ]; then
  node "$here/make-queries.mjs" "$zone" > "$queries"
fi

# dig +short prints its errors (";; connection refused") on stdout too, so look for a real SOA line.
answers() {
  dig +short +time=1 +tries=1 @127.0.0.1 -p "$port" example.test SOA 2>/dev/null | grep -q '^[^;].* [0-9]\+ [0-9]\+ [0-9]\+ [0-9]\+ [0-9]\+$'
}

if answers; then
  echo "something already answers on 127.0.0.1:$port; stop it or pass --port" >&2
  exit 1
fi

wait_ready() {
  local name="$1"
  for _ in $(seq 1 100); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "$name exited during start-up; its log:" >&2
      cat "$work/$name.log" >&2
      return 1
    fi
    if answers; then
      return 0
    fi
    sleep 0.1
  done
  echo "$name did not answer on 127.0.0.1:$port within 10 s; its log:" >&2
  cat "$work/$name.log" >&2
  return 1
}

# Prints "qps avg_ms max_ms lost_pct" from dnsperf's statistics.
run_dnsperf() {
  local name="$1"
  local args=(-s 127.0.0.1 -p "$port" -d "$queries" -l "$duration" -c "$clients")
  [ -n "$rate" ] && args+=(-Q "$rate")
  "${perf_pin[@]}" dnsperf "${args[@]}" > "$work/$name.dnsperf" 2>&1 || {
    cat "$work/$name.dnsperf" >&2
    return 1
  }
  awk '
    /Queries per second:/ { qps = $4 }
    /Queries lost:/ { lost = $4; gsub(/[()%]/, "", lost) }
    /Average Latency \(s\):/ {
      avg = $4 * 1000
      max = $8; gsub(/[),]/, "", max); max = max * 1000
    }
    END { printf "%.0f %.3f %.3f %s\n", qps, avg, max, lost }
  ' "$work/$name.dnsperf"
}

report() {
  local name="$1" qps="$2" avg="$3" max="$4" lost="$5"
  printf '%-6s %12s q/s   latency avg %8s ms   max %8s ms   lost %s%%\n' "$name" "$qps" "$avg" "$max" "$lost"
}

# --- Vigil ---
cat > "$work/vigil.yaml" <<EOF
listen: ["127.0.0.1:$port"]
zones:
  - origin: example.test.
    file: "$zone"
EOF
"${server_pin[@]}" node "$entry" serve --config "$work/vigil.yaml" --log-level warn > "$work/vigil.log" 2>&1 &
server_pid=$!
wait_ready vigil
echo "dnsperf: $(wc -l < "$queries") distinct query lines, ${duration}s, $clients clients${rate:+, capped at $rate q/s}${server_pin:+, server on cpu 0, dnsperf on cpu 1}" >&2
v_stats="$(run_dnsperf vigil)"
read -r v_qps v_avg v_max v_lost <<< "$v_stats"
stop_server
report vigil "$v_qps" "$v_avg" "$v_max" "$v_lost"

# --- Knot, same zone, same port, same load ---
if [ "$peer" = knot ]; then
  knotd_bin="$(command -v knotd || echo /usr/sbin/knotd)"
  [ -x "$knotd_bin" ] || { echo "knotd not found (Debian: apt-get install knot)" >&2; exit 1; }
  mkdir -p "$work/knot"
  cp "$zone" "$work/knot/example.test.zone"
  # One UDP and one TCP worker: Vigil answers on one thread, so this compares
  # per-core efficiency rather than Knot's ability to use more cores.
  cat > "$work/knot/knot.conf" <<EOF
server:
    rundir: "$work/knot"
    listen: 127.0.0.1@$port
    identity: ""
    version: ""
    nsid: ""
    udp-max-payload: 1232
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$work/knot"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "$work/knot"
    zonefile-load: whole
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: example.test.
    file: "$work/knot/example.test.zone"
EOF
  "${server_pin[@]}" "$knotd_bin" -c "$work/knot/knot.conf" > "$work/knot.log" 2>&1 &
  server_pid=$!
  wait_ready knot
  k_stats="$(run_dnsperf knot)"
  read -r k_qps k_avg k_max k_lost <<< "$k_stats"
  stop_server
  report knot "$k_qps" "$k_avg" "$k_max" "$k_lost"
  awk -v v="$v_qps" -v k="$k_qps" 'BEGIN { if (k > 0) printf "ratio  vigil/knot throughput %.2f\n", v / k }'
fi
