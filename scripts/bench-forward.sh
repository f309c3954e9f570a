#!/usr/bin/env bash
# Forward-proxy vs reverse-proxy mode, side by side in one run on loopback (127.0.0.1 only,
# time-bounded). One gateway process serves both modes (examples/bench_forward.rs serve);
# the same Rust closed-loop load generator (2 threads, N keep-alive connections, like
# wrk -t2 -cN) drives:
#   reverse   GET http://gw/bench/items                       (plain HTTP to the gateway)
#   forward   CONNECT 127.0.0.1:UP → TLS (leaf from the airlock CA) → GET /items (keep-alive)
#   fresh     the same, but a new tunnel + TLS handshake for every request
# plus wrk against reverse mode as a cross-check of the load generator (wrk cannot CONNECT).
# Upstream: nginx `return 200` on plain http (so both modes pay the same upstream leg).
# Needs: nginx, wrk, curl.   Usage: scripts/bench-forward.sh [seconds=10] [connections=64]
set -euo pipefail
SECS=${1:-10}
CONNS=${2:-64}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/airlock-fwd-bench.XXXXXX)
UP=18090; ALK=18092
cleanup() {
  [[ -n "${ALK_PID:-}" ]] && kill "$ALK_PID" 2>/dev/null || true
  [[ -f "$WORK/nginx.pid" ]] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cat > "$WORK/nginx.conf" <<NGINX
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/body;
  server {
    listen 127.0.0.1:$UP;
    keepalive_requests 1000000;
    location / { default_type application/json; return 200 '{"ok":true,"items":[1,2,3]}'; }
  }
}
NGINX
nginx -c "$WORK/nginx.conf" -p "$WORK"

cargo build --release -p airlock-gateway --example bench_forward >/dev/null 2>&1 || cargo build --release -p airlock-gateway --example bench_forward
BIN="$ROOT/target/release/examples/bench_forward"
"$BIN" serve "$WORK" "127.0.0.1:$ALK" "$UP" 2>"$WORK/airlock.log" &
ALK_PID=$!
for _ in $(seq 100); do [[ -s "$WORK/token" ]] && break; sleep 0.1; done
TOKEN=$(cat "$WORK/token")
curl -sf -H "X-Airlock-Token: $TOKEN" "http://127.0.0.1:$ALK/bench/items" >/dev/null || { echo "reverse mode not answering"; cat "$WORK/airlock.log"; exit 1; }
curl -sf --proxy "http://127.0.0.1:$ALK" --cacert "$WORK/ca.pem" -H "X-Airlock-Token: $TOKEN" "https://127.0.0.1:$UP/items" >/dev/null \
  || { echo "forward mode not answering"; cat "$WORK/airlock.log"; exit 1; }

echo "== load generator: 2 threads, $CONNS connections, ${SECS}s each"
"$BIN" load reverse "127.0.0.1:$ALK" "$UP" "$CONNS" "$SECS" "$WORK"
"$BIN" load forward "127.0.0.1:$ALK" "$UP" "$CONNS" "$SECS" "$WORK"
echo "== cross-check: wrk -t2 -c$CONNS -d${SECS}s --latency (reverse mode)"
wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -H "X-Airlock-Token: $TOKEN" "http://127.0.0.1:$ALK/bench/items" \
  | grep -E "Requests/sec|^\s+(50|90|99)%|Non-2xx|Socket errors"
echo "== fresh tunnel per request (CONNECT + TLS handshake + 1 request), $CONNS connections, ${SECS}s"
"$BIN" load fresh "127.0.0.1:$ALK" "$UP" "$CONNS" "$SECS" "$WORK"
echo "airlock RSS after load: $(awk '/VmRSS|VmHWM/ {printf "%s %s %s  ", $1, $2, $3}' "/proc/$ALK_PID/status")"
