#!/usr/bin/env bash
# Gateway benchmark, side by side in one run on loopback (127.0.0.1 only, time-bounded):
#   direct    wrk → nginx upstream (static 200)
#   nginx     wrk → nginx reverse proxy injecting Authorization (proxy_set_header) → upstream
#   bare      wrk → the same hyper server + pooled client airlock uses, only swapping the
#             Authorization header (examples/bench_bare.rs): the floor of the HTTP stack
#   airlock   wrk → airlock (token verify + Cedar + durable SQLite audit + inject) → upstream
# Then: airlock RSS under that load, and a 1 GiB request body streamed through airlock
# (peak RSS before/after). Needs: nginx, wrk, curl (apt-get install -y nginx wrk curl).
#
# Usage: scripts/bench-gateway.sh [duration=10s] [connections=64]
#   AIRLOCK_BENCH_BASELINE=<path to another bench_serve binary> also runs that build (port
#   18083, its own scratch store) in the same invocation, for before/after in one run.
#   AIRLOCK_BENCH_NO_AUDIT=1 → null audit sink (diagnostic only).
#   AIRLOCK_BENCH_NO_DECISION_CACHE=1 → Cedar evaluated on every request (no per-second cache).
set -euo pipefail
DUR=${1:-10s}
CONNS=${2:-64}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/airlock-bench.XXXXXX)
UP=18080; NGX=18081; ALK=18082; BASE=18083; BARE=18084
cleanup() {
  [[ -n "${ALK_PID:-}" ]] && kill "$ALK_PID" 2>/dev/null || true
  [[ -n "${BASE_PID:-}" ]] && kill "$BASE_PID" 2>/dev/null || true
  [[ -n "${BARE_PID:-}" ]] && kill "$BARE_PID" 2>/dev/null || true
  [[ -f "$WORK/nginx.pid" ]] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

. "$ROOT/scripts/bench-nginx.sh"
start_bench_nginx "$WORK" "$UP" "$NGX"

cargo build --release -p airlock-gateway --example bench_serve --example bench_bare >/dev/null 2>&1 || cargo build --release -p airlock-gateway --example bench_serve --example bench_bare
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/bench_serve"
"${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/bench_bare" "127.0.0.1:$BARE" "$UP" 2>"$WORK/bare.log" & BARE_PID=$!
start_gw() { # bin dir port → pid in $!
  mkdir -p "$2"
  "$1" "$2" "127.0.0.1:$3" "$UP" 2>"$2/airlock.log" &
}
wait_gw() { # dir port
  for _ in $(seq 100); do [[ -s "$1/token" ]] && curl -s -o /dev/null "http://127.0.0.1:$2/" && break; sleep 0.1; done
  curl -sf -H "X-Airlock-Token: $(cat "$1/token")" "http://127.0.0.1:$2/bench/items" >/dev/null || { echo "airlock on :$2 not answering"; cat "$1/airlock.log"; exit 1; }
}
start_gw "$BIN" "$WORK" "$ALK"; ALK_PID=$!
wait_gw "$WORK" "$ALK"
TOKEN=$(cat "$WORK/token")
if [[ -n "${AIRLOCK_BENCH_BASELINE:-}" ]]; then
  start_gw "$AIRLOCK_BENCH_BASELINE" "$WORK/base" "$BASE"; BASE_PID=$!
  wait_gw "$WORK/base" "$BASE"
fi
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)   cores: $(nproc)"

run() { # name url [header]
  local name=$1 url=$2; shift 2
  echo "== $name: wrk -t2 -c$CONNS -d$DUR --latency $url"
  wrk -t2 -c"$CONNS" -d"$DUR" --latency "$@" "$url" | grep -E "Requests/sec|Transfer|^\s+(50|75|90|99)%|Non-2xx|Socket errors|Latency "
}
rss() { awk '/VmRSS|VmHWM/ {printf "%s %s %s  ", $1, $2, $3}' "/proc/$ALK_PID/status"; echo; }

echo "airlock idle:            $(rss)"
run direct  "http://127.0.0.1:$UP/items"
run nginx   "http://127.0.0.1:$NGX/items"
run bare    "http://127.0.0.1:$BARE/items"
if [[ -n "${BASE_PID:-}" ]]; then
  run "airlock baseline ($AIRLOCK_BENCH_BASELINE)" "http://127.0.0.1:$BASE/bench/items" -H "X-Airlock-Token: $(cat "$WORK/base/token")"
fi
run airlock "http://127.0.0.1:$ALK/bench/items" -H "X-Airlock-Token: $TOKEN"
echo "airlock after load:      $(rss)"
rows() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from audit').fetchone()[0])" "$1" 2>/dev/null || echo '?'; }
echo "audit rows: airlock $(rows "$WORK/airlock.db")${BASE_PID:+, baseline $(rows "$WORK/base/airlock.db")}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== 1 GiB request body streamed through airlock (chunked upload)"
start=$(date +%s.%N)
head -c 1073741824 /dev/zero | curl -s -o /dev/null -w "status %{http_code}, uploaded %{size_upload} bytes\n" \
  -X POST -T - -H "X-Airlock-Token: $TOKEN" -H "Content-Type: application/octet-stream" "http://127.0.0.1:$ALK/bench/upload"
end=$(date +%s.%N)
echo "took $(python3 -c "print(round($end-$start,2))") s"
echo "airlock after 1 GiB:     $(rss)"
