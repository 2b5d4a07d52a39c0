#!/usr/bin/env bash
# Capacity with one core each, the load from h2load (issue 16: ">= 20x the Python original at one
# core each, default logging on"). Every server process is pinned to one CPU (taskset), h2load
# (one thread, C, far cheaper per call than a tonic client) to another, so the load generator is
# not what limits the Rust servers. Servers: the bench's echo server with grpc-helper's default
# logging (`--child helper --logging helper`: the layer an RpcServer installs, log files in a
# workspace; on `grpc_helper::server::runtime()`, current-thread on its one CPU, as the example
# server runs), bare tonic on `#[tokio::main]`'s runtime (`--child bare`, reference) and on a
# current-thread one (`--child bare-current-thread`: the same runtime as ours), and the Python
# grpc-helper 2.3.1 (`py_echo_server.py`). All get the same request on the same path: `SampleService/method4`,
# `SampleRequest { foo: "capacity" }`, with the metadata RpcClient sends (api_version, client,
# user, host, ip). Rounds alternate the order of the servers, so other load on the machine falls
# on all of them alike; each run is `-D SECS` after a 1 s warm-up.
#
# Capacity is a server's best throughput, and the best load level differs: in sweeps the Python
# server did best near 1 x 16 in some runs (4 x 32 up to 25% less: GIL contention), the Rust
# ones at 4 x 32 or 8 x 32. So each round loads every server at every level of -L (connections x
# calls in flight per connection) and a server's capacity in that round is its best level.
#
#   cargo build --release -p grpc-helper-examples --features jemalloc --example bench
#   bash examples/bench/capacity_h2load.sh [-r ROUNDS] [-D SECS] [-L "1x16 4x32 8x32"]
#       [-b BENCH_BIN] [-s SERVER_CPU] [-l LOAD_CPU]
#
# Prints every run (req/s, server CPU of its core, h2load CPU of its core, reply bytes), then per
# server the median capacity and, per round, its ratio to Python's capacity in the same round
# (median, min, max). Needs h2load (Debian: nghttp2-client), taskset (util-linux), GNU time
# (/usr/bin/time) and the Python venv (GRPC_HELPER_VENV, default target/py-venv).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=5 secs=5 levels="1x16 4x32 8x32" bench=target/release/examples/bench server_cpu=1 load_cpu=0
while getopts "r:D:L:b:s:l:" opt; do
  case $opt in
    r) rounds=$OPTARG ;; D) secs=$OPTARG ;; L) levels=$OPTARG ;; b) bench=$OPTARG ;; s) server_cpu=$OPTARG ;; l) load_cpu=$OPTARG ;;
    *) exit 2 ;;
  esac
done
python=${GRPC_HELPER_VENV:-$PWD/target/py-venv}/bin/python
for tool in h2load taskset /usr/bin/time "$bench" "$python"; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 2; }
done
work=$(mktemp -d)
pids=()
cleanup() {
  for fd in 3 4 5 6; do eval "exec $fd>&-" 2>/dev/null || true; done
  sleep 1
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# One gRPC frame: uncompressed, length 10, SampleRequest { foo (field 1) = "capacity" }.
printf '\0\0\0\0\x0a\x0a\x08capacity' >"$work/request.grpc"

# Starts "$@" pinned to the server CPU with stdin on fd $1 (the server stops when it closes);
# sets $port once its line `$2 <port>` appears.
start() {
  local fd=$1 ready=$2 name=$3
  shift 3
  mkfifo "$work/$name.in"
  taskset -c "$server_cpu" "$@" <"$work/$name.in" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
  eval "exec $fd>\"$work/$name.in\""
  for _ in $(seq 600); do
    port=$(awk -v r="$ready" '$1 == r { print $2; exit }' "$work/$name.out")
    [ -n "$port" ] && return
    sleep 0.1
  done
  echo "$name did not start:" >&2
  cat "$work/$name.err" >&2
  exit 1
}

names=() ports=() spids=()
start 3 PORT helper "$bench" --child helper --logging helper
names+=("helper, default logging") ports+=("$port") spids+=("${pids[-1]}")
start 4 PORT bare "$bench" --child bare --logging none
names+=("bare tonic") ports+=("$port") spids+=("${pids[-1]}")
start 6 PORT bare-ct "$bench" --child bare-current-thread --logging none
names+=("bare tonic, current-thread") ports+=("$port") spids+=("${pids[-1]}")
start 5 READY python "$python" examples/bench/py_echo_server.py --port 0 --proto-root proto --stream-items 1
names+=("Python grpc-helper 2.3.1") ports+=("$port") spids+=("${pids[-1]}")

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# Warm every server up (connections, JIT-free but caches and allocator pools), unmeasured.
for port in "${ports[@]}"; do
  taskset -c "$load_cpu" h2load -c 4 -m 32 -t 1 -D 1 -d "$work/request.grpc" -H 'content-type: application/grpc' \
    -H 'te: trailers' "http://127.0.0.1:$port/SampleService/method4" >/dev/null
done

declare -A rate best per_cpu best_cpu
echo "server CPU $server_cpu, h2load CPU $load_cpu; $rounds rounds of ${secs}s per server and level; h2load -t 1, levels $levels"
printf '%-6s %-6s %-26s %10s %11s %11s %11s %10s %7s\n' round load server "req/s" "calls/CPU-s" "server CPU" "h2load CPU" "data B/req" failed
for round in $(seq "$rounds"); do
  order=(0 1 2 3)
  [ $((round % 2)) -eq 0 ] && order=(3 2 1 0)
  for level in $levels; do
  conns=${level%x*} streams=${level#*x}
  for i in "${order[@]}"; do
    before=$(cpu_ticks "${spids[$i]}") start_ns=$(date +%s%N)
    out=$(/usr/bin/time -f '%U %S' -o "$work/h2load.cpu" taskset -c "$load_cpu" h2load -c "$conns" -m "$streams" -t 1 -D "$secs" \
      -d "$work/request.grpc" \
      -H 'content-type: application/grpc' -H 'te: trailers' -H 'api_version: 2' \
      -H 'client: capacity' -H "user: $(id -un)" -H "host: $(hostname)" -H 'ip: 127.0.0.1' \
      "http://127.0.0.1:${ports[$i]}/SampleService/method4")
    wall=$(( $(date +%s%N) - start_ns ))
    after=$(cpu_ticks "${spids[$i]}")
    h2_cpu=$(awk '{ print $1 + $2 }' "$work/h2load.cpu")
    rps=$(awk '/^finished in/ { gsub(",", ""); print $4 }' <<<"$out")
    done_=$(awk '/^requests:/ { print $8 }' <<<"$out")
    failed=$(awk '/^requests:/ { print $10 + $12 }' <<<"$out")
    data=$(awk '/^traffic:/ { for (f = 1; f <= NF; f++) if ($f == "data") { v = $(f - 1); gsub(/[()]/, "", v); print v } }' <<<"$out")
    server_pct=$(awk -v t=$((after - before)) -v hz="$hz" -v w="$wall" 'BEGIN { printf "%.0f%%", 100 * t / hz / (w / 1e9) }')
    h2_pct=$(awk -v c="$h2_cpu" -v w="$wall" 'BEGIN { printf "%.0f%%", 100 * c / (w / 1e9) }')
    per_req=$(awk -v d="$data" -v n="$done_" 'BEGIN { printf "%.0f", (n > 0 ? d / n : 0) }')
    calls_cpu=$(awk -v n="$done_" -v t=$((after - before)) -v hz="$hz" 'BEGIN { printf "%.0f", (t > 0 ? n * hz / t : 0) }')
    starved=$(awk -v p="${server_pct%\%}" 'BEGIN { if (p < 90) print "  (server starved: other load on its CPU)" }')
    printf '%-6s %-6s %-26s %10.0f %11s %11s %11s %10s %7s%s\n' "$round" "$level" "${names[$i]}" "$rps" "$calls_cpu" "$server_pct" "$h2_pct" "$per_req" "$failed" "$starved"
    [ "$failed" = 0 ] && [ "$per_req" -gt 0 ] || { echo "run failed: $out" >&2; exit 1; }
    rate[$i,$level,$round]=$rps
    per_cpu[$i,$level,$round]=$calls_cpu
    if awk -v a="$rps" -v b="${best[$i,$round]:-0}" 'BEGIN { exit !(a > b) }'; then best[$i,$round]=$rps; fi
    if awk -v a="$calls_cpu" -v b="${best_cpu[$i,$round]:-0}" 'BEGIN { exit !(a > b) }'; then best_cpu[$i,$round]=$calls_cpu; fi
  done
  done
done

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
# summary TITLE ARRAY BEST_ARRAY: per server the median per level, the median best, its ratio to Python.
summary() {
  local -n values=$2 bests=$3
  echo
  printf '%-26s' "$1"
  for level in $levels; do printf ' %9s' "$level"; done
  printf ' %9s %10s %10s %10s\n' best "x Py med" "x Py min" "x Py max"
  for i in 0 1 2 3; do
    printf '%-26s' "${names[$i]}"
    for level in $levels; do
      printf ' %9.0f' "$(for r in $(seq "$rounds"); do echo "${values[$i,$level,$r]}"; done | median)"
    done
    med=$(for r in $(seq "$rounds"); do echo "${bests[$i,$r]}"; done | median)
    ratios=$(for r in $(seq "$rounds"); do awk -v a="${bests[$i,$r]}" -v b="${bests[3,$r]}" 'BEGIN { print a / b }'; done)
    printf ' %9.0f %9.1fx %9.1fx %9.1fx\n' "$med" \
      "$(median <<<"$ratios")" "$(sort -g <<<"$ratios" | head -1)" "$(sort -g <<<"$ratios" | tail -1)"
  done
}
summary "median req/s per level" rate best
summary "calls per CPU-second" per_cpu best_cpu
echo "(best: a server's best level in a round, median over rounds; x Py: per round, that best over the"
echo " Python server's best in the same round. req/s is throughput, lowered when other programs take"
echo " the server's CPU (rows marked starved); calls per CPU-second is what one core serves, from the"
echo " server's CPU time (/proc/<pid>/stat) over its run, less sensitive to that. h2load CPU: of the"
echo " other core, under 100% = not load-generator bound.)"
