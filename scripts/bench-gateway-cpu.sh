#!/usr/bin/env bash
# CPU cost per request, side by side: user+sys CPU time each proxy process spent (from
# /proc/<pid>/stat) divided by the requests wrk completed — steadier than req/s on a shared
# machine. Loopback only (127.0.0.1:18080–18084), time-bounded. Needs nginx, wrk.
#   nginx    two nginx workers (scripts/bench-nginx.sh): the header-injecting proxy AND the
#            upstream (both counted)
#   bare     examples/bench_bare.rs: hyper server + pooled client, header swap only
#   airlock  examples/bench_serve.rs: the real pipeline, durable SQLite audit
#
# Usage: scripts/bench-gateway-cpu.sh [duration=8s]
#   VARIANTS="nginx bare airlock"   which rows, in order (repeat a name to run it again)
#   AIRLOCK_ENV="AIRLOCK_BENCH_NO_AUDIT=1"   environment for bench_serve (diagnostics:
#       AIRLOCK_BENCH_NO_AUDIT, AIRLOCK_BENCH_NO_OUTCOME, AIRLOCK_BENCH_NO_DECISION_CACHE)
#   BARE_ENV="BARE_PER_CORE=1"      one single-threaded runtime per core for bench_bare
#   AIRLOCK_SERVE_BIN=<path>        another build of bench_serve (before/after comparisons)
set -euo pipefail
DUR=${1:-8s}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
T="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples"
W=$(mktemp -d /tmp/airlock-cpu.XXXXXX)
cleanup() {
  [[ -n "${AP:-}" ]] && kill "$AP" 2>/dev/null || true
  [[ -n "${BP:-}" ]] && kill "$BP" 2>/dev/null || true
  [[ -f "$W/nginx.pid" ]] && kill "$(cat "$W/nginx.pid")" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
cargo build --release -p airlock-gateway --example bench_serve --example bench_bare >/dev/null 2>&1 \
  || cargo build --release -p airlock-gateway --example bench_serve --example bench_bare
. "$ROOT/scripts/bench-nginx.sh"
start_bench_nginx "$W" 18080 18081
env ${BARE_ENV:-BARE=1} "$T/bench_bare" 127.0.0.1:18084 18080 2>"$W/bare.log" & BP=$!
mkdir -p "$W/a"
env ${AIRLOCK_ENV:-AIRLOCK=1} "${AIRLOCK_SERVE_BIN:-$T/bench_serve}" "$W/a" 127.0.0.1:18082 18080 2>"$W/a/log" & AP=$!
for _ in $(seq 100); do [[ -s "$W/a/token" ]] && break; sleep 0.1; done
sleep 0.5
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
nginx_cpu() { local s=0; for p in $(pgrep -f "nginx: worker process" ); do s=$((s + $(cpu "$p"))); done; echo "$s"; }
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)   cores: $(nproc)   ${AIRLOCK_ENV:-} ${BARE_ENV:-}"
for v in ${VARIANTS:-nginx bare airlock}; do
  case $v in
    nginx) url=http://127.0.0.1:18081/items; hdr=(); pid=;;
    bare) url=http://127.0.0.1:18084/items; hdr=(); pid=$BP;;
    airlock) url=http://127.0.0.1:18082/bench/items; hdr=(-H "X-Airlock-Token: $(cat "$W/a/token")"); pid=$AP;;
    *) echo "unknown variant $v"; exit 2;;
  esac
  c0=$([[ -n "$pid" ]] && cpu "$pid" || nginx_cpu)
  out=$(wrk -t2 -c64 -d"$DUR" --latency "${hdr[@]}" "$url")
  c1=$([[ -n "$pid" ]] && cpu "$pid" || nginx_cpu)
  echo "$out" | awk -v v="$v" -v ticks=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" '
    /Requests\/sec/ {r=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /requests in/ {n=$1}
    END {printf "%-8s %10s req/s  p50 %-8s p99 %-8s CPU %6.1f µs/request\n", v, r, p50, p99, ticks * 1e6 / hz / n}'
done
