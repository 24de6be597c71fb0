#!/usr/bin/env bash
# Vigil side by side with a Node floor, NSD, Knot DNS and gdnsd: each serves
# zones/examples/example.test.zone on 127.0.0.1:PORT in turn (never two at
# once under load), dnsperf sends bench/queries.txt to each, and one table of
# medians comes out. Not a test: nothing asserts on the numbers. See
# bench/peers/README.md.
#
#   bash bench/peers/run.sh [--runs N] [--duration S] [--rate QPS] [--only floor,vigil,nsd,knot,gdnsd]
#                           [--warmup S] [--port P] [--prime HOST:PORT] [--clients N] [--outstanding N] [--keep]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
port=5395
duration=10
runs=3
rate=""
warmup=0
only=""
prime=""
clients=4
outstanding=200
keep=0

usage() {
  sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="${2:?--runs needs a value}"; shift 2 ;;
    --duration) duration="${2:?--duration needs a value}"; shift 2 ;;
    --rate) rate="${2:?--rate needs a value}"; shift 2 ;;
    --warmup) warmup="${2:?--warmup needs a value}"; shift 2 ;;
    --only) only="${2:?--only needs a value}"; shift 2 ;;
    --port) port="${2:?--port needs a value}"; shift 2 ;;
    --prime) prime="${2:?--prime needs HOST:PORT}"; shift 2 ;;
    --clients) clients="${2:?--clients needs a value}"; shift 2 ;;
    --outstanding) outstanding="${2:?--outstanding needs a value}"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown argument: $1" >&2; usage 2 ;;
  esac
done
case "$warmup" in ''|*[!0-9]*) echo "--warmup: not a number of seconds: $warmup" >&2; exit 2 ;; esac
for n in "$runs" "$duration" "$port" "$clients" "$outstanding" ${rate:+"$rate"}; do
  case "$n" in ''|*[!0-9]*|0) echo "not a positive number: $n" >&2; exit 2 ;; esac
done

servers=(floor vigil nsd knot gdnsd)
declare -A wanted=()
if [ -z "$only" ]; then
  for s in "${servers[@]}"; do wanted[$s]=1; done
else
  IFS=, read -r -a picked <<< "$only"
  for s in "${picked[@]}"; do
    case " ${servers[*]} " in *" $s "*) wanted[$s]=1 ;; *) echo "--only: unknown server '$s' (known: ${servers[*]})" >&2; exit 2 ;; esac
  done
fi

# --- Programs: install what is missing when root, skip it otherwise ---------

# A server binary, also from /usr/sbin when that is not on PATH (non-root shells).
find_bin() {
  command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || true
}

# Debian starts (and enables) each server's own service on install. Stop and
# disable only the ones the install just started: processes that were not
# running before it.
stop_package_services() {
  local before="$1" svc proc pids pid
  for pair in nsd:nsd knot:knotd gdnsd:gdnsd; do
    svc="${pair%%:*}" proc="${pair#*:}"
    pids="$(pgrep -x "$proc" || true)"
    [ -n "$pids" ] || continue
    local fresh=()
    for pid in $pids; do
      case " $before " in *" $pid "*) ;; *) fresh+=("$pid") ;; esac
    done
    [ ${#fresh[@]} -gt 0 ] || continue
    echo "stopping the $svc service the package started (pids ${fresh[*]})" >&2
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
      systemctl disable --now "$svc" >/dev/null 2>&1 || true
    else
      command -v service >/dev/null && service "$svc" stop >/dev/null 2>&1 || true
      command -v update-rc.d >/dev/null && update-rc.d "$svc" disable >/dev/null 2>&1 || true
    fi
    # No init system to ask (a container): end those processes by their pids.
    local alive=()
    for _ in $(seq 1 30); do
      alive=()
      for pid in "${fresh[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
      [ ${#alive[@]} -gt 0 ] || break
      sleep 0.1
    done
    for pid in "${alive[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  done
}

install_missing() {
  local pkgs=()
  command -v dnsperf >/dev/null || pkgs+=(dnsperf)
  command -v dig >/dev/null || pkgs+=(bind9-dnsutils)
  [ -z "${wanted[nsd]:-}" ] || [ -n "$(find_bin nsd)" ] || pkgs+=(nsd)
  # Knot serves its own rows and, without --prime, the floor's answers.
  local need_knot="${wanted[knot]:-}"
  [ -n "${wanted[floor]:-}" ] && [ -z "$prime" ] && need_knot=1
  [ -z "$need_knot" ] || [ -n "$(find_bin knotd)" ] || pkgs+=(knot)
  [ -z "${wanted[gdnsd]:-}" ] || [ -n "$(find_bin gdnsd)" ] || pkgs+=(gdnsd)
  [ ${#pkgs[@]} -gt 0 ] || return 0
  if [ "$(id -u)" != 0 ]; then
    echo "not root, so not installing: ${pkgs[*]} (apt-get install -y ${pkgs[*]})" >&2
    return 0
  fi
  echo "installing ${pkgs[*]}" >&2
  local before
  before="$(pgrep -x 'nsd|knotd|gdnsd' | tr '\n' ' ' || true)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y "${pkgs[@]}" >&2 \
    || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y "${pkgs[@]}" >&2; }
  stop_package_services "$before"
}
install_missing

# shellcheck source=bench/lib.sh
. "$here/../lib.sh"
require_tools dnsperf dig node

zone="$root/zones/examples/example.test.zone"
queries="$root/bench/queries.txt"
work="$(mktemp -d "${TMPDIR:-/tmp}/vigil-peers.XXXXXX")"
bench_keep="$keep"
prime_pid=""
bench_trap
trap 'stop_pid "$prime_pid"; bench_cleanup' EXIT
dnsperf_extra=(-q "$outstanding")

ensure_queries
refuse_busy_port

pinned=0
[ ${#server_pin[@]} -gt 0 ] && pinned=1
pin_word="pinned"
[ "$pinned" = 1 ] || pin_word="unpinned (no second CPU or no taskset)"

# --- Rows: id, server, mode; "pinned" rows put the server on CPU 0 and
# dnsperf on CPU 1, the others leave both to the scheduler. ---------------------
rows=()
declare -A server_of=() mode_of=() pinned_of=() skip=()
add_row() { rows+=("$1"); server_of[$1]="$2"; mode_of[$1]="$3"; pinned_of[$1]="$4"; }
add_row floor floor "1 proc $pin_word" 1
add_row vigil vigil "1 proc $pin_word" 1
add_row vigil-workers vigil "workers auto, unpinned" 0
add_row nsd nsd "server-count 1, $pin_word" 1
add_row knot knot "1 UDP worker, $pin_word" 1
add_row knot-defaults knot "defaults, unpinned" 0
add_row gdnsd gdnsd "1 UDP thread, $pin_word" 1

nsd_bin="$(find_bin nsd)"
knotd_bin="$(find_bin knotd)"
gdnsd_bin="$(find_bin gdnsd)"
for row in "${rows[@]}"; do
  [ -n "${wanted[${server_of[$row]}]:-}" ] || skip[$row]="not picked"
done
[ -n "$nsd_bin" ] || skip[nsd]="skipped: nsd not installed"
[ -n "$knotd_bin" ] || { skip[knot]="skipped: knotd not installed"; skip[knot-defaults]="${skip[knot]}"; }
[ -n "$gdnsd_bin" ] || skip[gdnsd]="skipped: gdnsd not installed"
[ -n "$prime" ] || [ -n "$knotd_bin" ] || skip[floor]="skipped: no knotd to prime from (give --prime HOST:PORT)"
if [ -n "${wanted[vigil]:-}" ]; then
  ensure_build
  if ! node "$root/dist/cli/vigil.js" --help 2>&1 | grep -q -- --workers; then
    skip[vigil-workers]="n/a (no --workers)"
  fi
fi
for row in "${rows[@]}"; do
  case "${skip[$row]:-}" in ''|"not picked") ;; *) echo "${server_of[$row]} (${mode_of[$row]}): ${skip[$row]}" >&2 ;; esac
done

# --- Per-server configuration, written once into $work -----------------------

# fill TEMPLATE DIR PORT > FILE
fill() {
  sed -e "s|@DIR@|$2|g" -e "s|@PORT@|$3|g" "$1"
}

cat > "$work/vigil.yaml" <<EOF
listen: ["127.0.0.1:$port"]
zones:
  - origin: example.test.
    file: "$zone"
EOF

# knot_dir NAME PORT [defaults]: a Knot directory with its config and the zone.
knot_dir() {
  local dir="$work/$1"
  mkdir -p "$dir"
  cp "$zone" "$dir/example.test.zone"
  if [ "${3:-}" = defaults ]; then
    fill "$here/knot.conf.in" "$dir" "$2" | sed '/# one-core$/d' > "$dir/knot.conf"
  else
    fill "$here/knot.conf.in" "$dir" "$2" > "$dir/knot.conf"
  fi
}

# The floor is primed from Knot on the next port up, unless --prime names a server.
prime_port=$((port + 1))

# start_row ROW: starts the row's server and waits for its SOA; sets server_pid.
start_row() {
  local row="$1" pin=()
  [ "${pinned_of[$row]}" = 1 ] && pin=("${server_pin[@]}")
  case "$row" in
    floor)
      local from="$prime"
      if [ -z "$from" ]; then
        refuse_busy_port "$prime_port"
        [ -f "$work/knot-prime/knot.conf" ] || knot_dir knot-prime "$prime_port"
        start_server knot-prime "$knotd_bin" -c "$work/knot-prime/knot.conf"
        prime_pid="$server_pid"
        wait_ready knot-prime "$prime_port" || return 1
        from="127.0.0.1:$prime_port"
      fi
      start_server floor "${pin[@]}" node "$here/floor.mjs" --port "$port" --prime "$from" \
        --queries "$queries" --also "example.test SOA"
      # Priming asks a few thousand questions first: give it longer than the others.
      wait_ready floor "$port" 300 || return 1
      stop_pid "$prime_pid"
      prime_pid=""
      ;;
    vigil)
      start_server vigil "${pin[@]}" node "$root/dist/cli/vigil.js" serve --config "$work/vigil.yaml" --log-level warn
      wait_ready vigil
      ;;
    vigil-workers)
      start_server vigil-workers "${pin[@]}" node "$root/dist/cli/vigil.js" serve --config "$work/vigil.yaml" --log-level warn --workers auto
      wait_ready vigil-workers
      ;;
    nsd)
      local dir="$work/nsd"
      if [ ! -f "$dir/nsd.conf" ]; then
        mkdir -p "$dir"
        cp "$zone" "$dir/example.test.zone"
        fill "$here/nsd.conf.in" "$dir" "$port" > "$dir/nsd.conf"
      fi
      # -d: stay in the foreground, so that stop_server reaches it.
      start_server nsd "${pin[@]}" "$nsd_bin" -d -c "$dir/nsd.conf"
      wait_ready nsd || { cat "$dir/nsd.log" >&2 2>/dev/null; return 1; }
      ;;
    knot|knot-defaults)
      [ -f "$work/$row/knot.conf" ] || knot_dir "$row" "$port" "$([ "$row" = knot-defaults ] && echo defaults)"
      start_server "$row" "${pin[@]}" "$knotd_bin" -c "$work/$row/knot.conf"
      wait_ready "$row"
      ;;
    gdnsd)
      local dir="$work/gdnsd"
      if [ ! -f "$dir/config" ]; then
        mkdir -p "$dir/zones"
        # gdnsd takes the zone's name from its file name; the file itself loads unchanged.
        cp "$zone" "$dir/zones/example.test"
        fill "$here/gdnsd.config.in" "$dir" "$port" > "$dir/config"
      fi
      start_server gdnsd "${pin[@]}" "$gdnsd_bin" -c "$dir" start
      wait_ready gdnsd
      ;;
  esac
}

# --- Runs: round by round, each server in turn, so that a change in the
# machine's background load spreads over every row. -------------------------
declare -A qps=() avg=() max=() lost=() failed=()
perf_desc="dnsperf -c $clients -q $outstanding -l $duration${rate:+ -Q $rate}"
[ "$warmup" -eq 0 ] || perf_desc+=", after ${warmup} s not counted"
echo "$perf_desc, $(wc -l < "$queries") query lines, $runs run(s) per row, port $port" >&2
for round in $(seq 1 "$runs"); do
  for row in "${rows[@]}"; do
    [ -z "${skip[$row]:-}" ] && [ -z "${failed[$row]:-}" ] || continue
    refuse_busy_port
    if ! start_row "$row"; then
      failed[$row]="failed at start-up (log above)"
      stop_server
      stop_pid "$prime_pid"
      prime_pid=""
      continue
    fi
    # --warmup: the same load, not counted, first. Every row starts a fresh
    # process, and a Node process's first seconds run uncompiled code: the
    # floor's and Vigil's first run at 20k q/s had 3-6 times the average and
    # maximum latency of their next (bench/README.md). C servers lose nothing.
    if [ "$warmup" -gt 0 ]; then
      ([ "${pinned_of[$row]}" = 1 ] || perf_pin=(); duration="$warmup" run_dnsperf "$row.$round.warmup" > /dev/null) || true
    fi
    # Unpinned rows leave dnsperf to the scheduler too (emptied in the subshell only).
    stats="$([ "${pinned_of[$row]}" = 1 ] || perf_pin=(); run_dnsperf "$row.$round")" || stats=""
    stop_server
    if [ -z "$stats" ]; then
      failed[$row]="failed: dnsperf (output above)"
      continue
    fi
    read -r q a m l <<< "$stats"
    qps[$row]+="$q " avg[$row]+="$a " max[$row]+="$m " lost[$row]+="$l "
    printf 'run %d/%d  %-6s %-34s %8s q/s  avg %7s ms  max %8s ms  lost %s%%\n' \
      "$round" "$runs" "${server_of[$row]}" "${mode_of[$row]}" "$q" "$a" "$m" "$l" >&2
  done
done

# --- The table ---------------------------------------------------------------
med() {
  # shellcheck disable=SC2086 # word splitting of the collected values is the point
  median $1
}
version_of() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo "?"; }
cpu_model="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPU(s) ${cpu_model:+($cpu_model) }$(uname -sr), Node $(node --version)," \
  "NSD $(version_of nsd), Knot $(version_of knot), gdnsd $(version_of gdnsd), dnsperf $(version_of dnsperf)"
echo "$perf_desc, bench/queries.txt; median of $runs run(s); pinned rows: server on CPU 0, dnsperf on CPU 1"
echo
echo "| server | mode | q/s | lost | avg ms | max ms | Vigil(1 proc)/this |"
echo "|---|---|---:|---:|---:|---:|---:|"
v1=""
[ -n "${qps[vigil]:-}" ] && v1="$(med "${qps[vigil]}")"
for row in "${rows[@]}"; do
  [ "${skip[$row]:-}" = "not picked" ] && continue
  note="${skip[$row]:-${failed[$row]:-}}"
  if [ -z "${qps[$row]:-}" ]; then
    printf '| %s | %s | %s | | | | |\n' "${server_of[$row]}" "${mode_of[$row]}" "${note:-no run}"
    continue
  fi
  q="$(med "${qps[$row]}")"
  ratio="—"
  [ -n "$v1" ] && ratio="$(awk -v v="$v1" -v r="$q" 'BEGIN { if (r > 0) printf "%.2f", v / r; else print "—" }')"
  printf '| %s | %s | %.0f | %s%% | %s | %s | %s |\n' "${server_of[$row]}" "${mode_of[$row]}${note:+ ($note)}" "$q" \
    "$(med "${lost[$row]}")" "$(med "${avg[$row]}")" "$(med "${max[$row]}")" "$ratio"
done
echo
ratio_line() {
  local label="$1" a="$2" b="$3"
  if [ -n "${qps[$a]:-}" ] && [ -n "${qps[$b]:-}" ]; then
    awk -v x="$(med "${qps[$a]}")" -v y="$(med "${qps[$b]}")" -v l="$label" 'BEGIN { if (y > 0) printf "%-28s %.2f\n", l, x / y; else printf "%-28s n/a\n", l }'
  else
    printf '%-28s n/a\n' "$label"
  fi
}
ratio_line "vigil 1 proc / floor" vigil floor
ratio_line "vigil workers / vigil 1 proc" vigil-workers vigil
[ ${#failed[@]} -eq 0 ]
