#!/usr/bin/env bash
# Load-test Vigil with dnsperf on the example zone. Not a test: numbers depend
# on the machine, so nothing asserts on them. For Vigil beside NSD, Knot,
# gdnsd and a Node floor, see bench/peers/run.sh. See bench/README.md.
#
#   bash bench/run.sh [--rate QPS] [--duration S] [--clients N] [--port P]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
port=5399
duration=10
clients=4
rate=""

usage() {
  sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --peer) echo "--peer moved: bash bench/peers/run.sh --only vigil,knot runs both on the same zone and load" >&2; exit 2 ;;
    --rate) rate="${2:?--rate needs a value}"; shift 2 ;;
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
work="$(mktemp -d "${TMPDIR:-/tmp}/vigil-bench.XXXXXX")"
bench_trap

ensure_build
ensure_queries
refuse_busy_port

cat > "$work/vigil.yaml" <<YAML
listen: ["127.0.0.1:$port"]
zones:
  - origin: example.test.
    file: "$zone"
YAML
start_server vigil "${server_pin[@]}" node "$root/dist/cli/vigil.js" serve --config "$work/vigil.yaml" --log-level warn
wait_ready vigil
echo "dnsperf: $(wc -l < "$queries") distinct query lines, ${duration}s, $clients clients${rate:+, capped at $rate q/s}${server_pin:+, server on cpu 0, dnsperf on cpu 1}" >&2
stats="$(run_dnsperf vigil)"
read -r qps avg max lost <<< "$stats"
stop_server
printf '%-6s %12s q/s   latency avg %8s ms   max %8s ms   lost %s%%\n' vigil "$qps" "$avg" "$max" "$lost"
