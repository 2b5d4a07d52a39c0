#!/usr/bin/env bash
# Server binaries (the example server, as users run it: its own logging, a workspace) against a
# bare tonic server answering the same path with the same reply bytes, under h2load, alternating.
#
#   cargo build --release -p grpc-helper-examples --features jemalloc --example server --example bench
#   bash examples/bench/h2load_vs_bare.sh [-r ROUNDS] [-n REQUESTS] [-p PATH] SERVER_BIN...
#
# Each SERVER_BIN is started as `SERVER_BIN --port P -w WORKSPACE` (logs to its workspace, console
# to /dev/null). The bare server is the bench's `--serve bare`, given the first server's `info`
# reply (fetched with the Python grpcio of target/py-venv). Prints req/s and the server's CPU per
# call (from /proc/<pid>/stat) of every run. Needs h2load (Debian: nghttp2-client).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=3 requests=100000 path=/RpcServerService/info
while getopts "r:n:p:" opt; do
  case $opt in
    r) rounds=$OPTARG ;; n) requests=$OPTARG ;; p) path=$OPTARG ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-r ROUNDS] [-n REQUESTS] [-p PATH] SERVER_BIN..." >&2; exit 2; }
python=${GRPC_HELPER_VENV:-$PWD/target/py-venv}/bin/python
bench=target/release/examples/bench
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
printf '\0\0\0\0\0' >"$work/empty.grpc"

# The port a server started on port 0 announced ("serving on port N") in the file $1.
announced_port() {
  for _ in $(seq 100); do
    port=$(sed -n 's/^serving on port \([0-9]*\).*/\1/p' "$1")
    [ -n "$port" ] && return
    sleep 0.1
  done
  echo "no 'serving on port' line in $1" >&2
  exit 1
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

names=() ports=()
for bin in "$@"; do
  out="$work/out-${#names[@]}"
  "$bin" --port 0 -w "$work/ws-${#names[@]}" >"$out" 2>/dev/null &
  pids+=($!)
  announced_port "$out"
  names+=("$(basename "$bin")") ports+=("$port")
done
"$python" - "${ports[0]}" "$work/info.bin" <<'PY'
import sys, grpc
call = grpc.insecure_channel(f"127.0.0.1:{sys.argv[1]}").unary_unary(
    "/RpcServerService/info", request_serializer=lambda b: b, response_deserializer=lambda b: b)
open(sys.argv[2], "wb").write(call(b"", metadata=[("api_version", "1")], timeout=5))
PY
coproc BARE { exec "$bench" --serve bare --info-reply "$work/info.bin"; }
read -r line <&"${BARE[0]}"
names=("bare tonic" "${names[@]}") ports=("${line#PORT }" "${ports[@]}") pids=("$BARE_PID" "${pids[@]}")

declare -A total_rate total_cpu
echo "h2load -n $requests -c 4 -m 16 -t 1, $path, $rounds round(s); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$rounds"); do
  for i in "${!names[@]}"; do
    before=$(cpu_ticks "${pids[$i]}")
    out=$(h2load -n "$requests" -c 4 -m 16 -t 1 -d "$work/empty.grpc" -H 'content-type: application/grpc' \
      -H 'te: trailers' -H 'api_version: 1' "http://127.0.0.1:${ports[$i]}$path")
    after=$(cpu_ticks "${pids[$i]}")
    rate=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
    ok=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' <<<"$out")
    cpu=$(bc -l <<<"($after - $before) * 10000 / $ok") # CPU ticks are 10 ms
    printf 'round %s  %-24s %9.0f req/s  %5.1f us server CPU/call  (%s succeeded)\n' "$round" "${names[$i]}" \
      "$rate" "$cpu" "$ok"
    total_rate[$i]=$(bc -l <<<"${total_rate[$i]:-0} + $rate")
    total_cpu[$i]=$(bc -l <<<"${total_cpu[$i]:-0} + $cpu")
  done
done
echo "mean over the rounds, and ratio to bare tonic:"
for i in "${!names[@]}"; do
  printf '  %-24s %9.0f req/s (%.2fx)  %5.1f us server CPU/call (%.2fx)\n' "${names[$i]}" \
    "$(bc -l <<<"${total_rate[$i]} / $rounds")" "$(bc -l <<<"${total_rate[$i]} / ${total_rate[0]}")" \
    "$(bc -l <<<"${total_cpu[$i]} / $rounds")" "$(bc -l <<<"${total_cpu[$i]} / ${total_cpu[0]}")"
done
