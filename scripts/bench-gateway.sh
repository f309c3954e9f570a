#!/usr/bin/env bash
# Gateway benchmark, side by side in one run on loopback (127.0.0.1 only, time-bounded):
#   direct    wrk → nginx upstream (static 200)
#   nginx     wrk → nginx reverse proxy injecting Authorization (proxy_set_header) → upstream
#   airlock   wrk → airlock (token verify + Cedar + durable SQLite audit + inject) → upstream
# Then: airlock RSS under that load, and a 1 GiB request body streamed through airlock
# (peak RSS before/after). Needs: nginx, wrk, curl (apt-get install -y nginx wrk curl).
#
# Usage: scripts/bench-gateway.sh [duration=10s] [connections=64]
set -euo pipefail
DUR=${1:-10s}
CONNS=${2:-64}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/airlock-bench.XXXXXX)
UP=18080; NGX=18081; ALK=18082
cleanup() {
  [[ -n "${ALK_PID:-}" ]] && kill "$ALK_PID" 2>/dev/null || true
  [[ -f "$WORK/nginx.pid" ]] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cat > "$WORK/nginx.conf" <<NGINX
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/body;
  proxy_temp_path $WORK/proxy;
  client_max_body_size 0;
  upstream backend { server 127.0.0.1:$UP; keepalive 128; }
  server {
    listen 127.0.0.1:$UP;
    location / { default_type application/json; return 200 '{"ok":true,"items":[1,2,3]}'; }
  }
  server {
    listen 127.0.0.1:$NGX;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host 127.0.0.1:$UP;
      proxy_set_header Authorization "Bearer sk-bench-0123456789abcdef0123456789";
    }
  }
}
NGINX
nginx -c "$WORK/nginx.conf" -p "$WORK"

cargo build --release -p airlock-gateway --example bench_serve >/dev/null 2>&1 || cargo build --release -p airlock-gateway --example bench_serve
BIN="$ROOT/target/release/examples/bench_serve"
"$BIN" "$WORK" "127.0.0.1:$ALK" "$UP" 2>"$WORK/airlock.log" &   # AIRLOCK_BENCH_NO_AUDIT=1 → null audit sink (diagnostic)
ALK_PID=$!
for _ in $(seq 100); do [[ -s "$WORK/token" ]] && curl -s -o /dev/null "http://127.0.0.1:$ALK/" && break; sleep 0.1; done
TOKEN=$(cat "$WORK/token")
curl -sf -H "X-Airlock-Token: $TOKEN" "http://127.0.0.1:$ALK/bench/items" >/dev/null || { echo "airlock not answering"; cat "$WORK/airlock.log"; exit 1; }

run() { # name url [header]
  local name=$1 url=$2; shift 2
  echo "== $name: wrk -t2 -c$CONNS -d$DUR --latency $url"
  wrk -t2 -c"$CONNS" -d"$DUR" --latency "$@" "$url" | grep -E "Requests/sec|Transfer|^\s+(50|75|90|99)%|Non-2xx|Socket errors|Latency "
}
rss() { awk '/VmRSS|VmHWM/ {printf "%s %s %s  ", $1, $2, $3}' "/proc/$ALK_PID/status"; echo; }

echo "airlock idle:            $(rss)"
run direct  "http://127.0.0.1:$UP/items"
run nginx   "http://127.0.0.1:$NGX/items"
run airlock "http://127.0.0.1:$ALK/bench/items" -H "X-Airlock-Token: $TOKEN"
echo "airlock after load:      $(rss)"
echo "audit rows: $(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from audit').fetchone()[0])" "$WORK/airlock.db" 2>/dev/null || echo '?')"

echo "== 1 GiB request body streamed through airlock (chunked upload)"
start=$(date +%s.%N)
head -c 1073741824 /dev/zero | curl -s -o /dev/null -w "status %{http_code}, uploaded %{size_upload} bytes\n" \
  -X POST -T - -H "X-Airlock-Token: $TOKEN" -H "Content-Type: application/octet-stream" "http://127.0.0.1:$ALK/bench/upload"
end=$(date +%s.%N)
echo "took $(python3 -c "print(round($end-$start,2))") s"
echo "airlock after 1 GiB:     $(rss)"
