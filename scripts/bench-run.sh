#!/usr/bin/env bash
# `airlock run` start-up on a 10k-file workspace, and the gateway relay's added latency,
# side by side in one run.
#
# Usage: scripts/bench-run.sh [RUNS=30]
#
# Environment (all optional):
#   AIRLOCK       the airlock binary to measure (default: $CARGO_TARGET_DIR/release/airlock, built here)
#   AIRLOCK_OLD   an older airlock binary to put beside it (e.g. built from the commit before
#                 the namespace sandbox); its `run` has no --network none, so it runs with its
#                 own default (Landlock only, network open)
#   WORK          scratch directory (default /tmp/airlock-bench-run)
#   GIT_COMMITS   also measure with a git repository of this many commits in the workspace (default 300; 0 = skip)
#
# Needs hyperfine, wrk and nginx (Debian packages). Everything listens on 127.0.0.1 only.
set -euo pipefail
RUNS=${1:-30}
WORK=${WORK:-/tmp/airlock-bench-run}
GIT_COMMITS=${GIT_COMMITS:-300}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -z "${AIRLOCK:-}" ]; then
  (cd "$ROOT" && cargo build --release -p airlock-cli >/dev/null)
  AIRLOCK=$TARGET/release/airlock
fi
for t in hyperfine wrk nginx; do command -v $t >/dev/null || { echo "needs $t (apt-get install hyperfine wrk nginx-light)" >&2; exit 2; }; done

rm -rf "$WORK"; mkdir -p "$WORK"
cp "$AIRLOCK" "$WORK/airlock"
[ -n "${AIRLOCK_OLD:-}" ] && cp "$AIRLOCK_OLD" "$WORK/airlock-old"
python3 "$ROOT/crates/run/bench/gen-ws.py" "$WORK/ws" >/dev/null
# The state directory outside /tmp, as an installation's would be (the shared temp dir is
# then granted as it is, not replaced by a private one).
export AIRLOCK_HOME=/var/tmp/airlock-bench-run-state
rm -rf "$AIRLOCK_HOME"
"$WORK/airlock" init >/dev/null 2>&1
unset AIRLOCK_CONFIG

# A static HTTP server standing in for the gateway (the relay's cost does not depend on
# what answers), on a port of its own.
PORT=18791
cat > "$WORK/nginx.conf" <<NGINX
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  server { listen 127.0.0.1:$PORT; location / { default_type application/json; return 404 '{"error":"unknown_upstream"}'; } }
}
NGINX
nginx -c "$WORK/nginx.conf"
trap 'kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true' EXIT
GW="--gateway 127.0.0.1:$PORT"
RUN="$WORK/airlock run --env staging --grant github:read"

startup() {
  local label=$1
  cd "$WORK/ws"
  local cmds=('true')
  [ -n "${AIRLOCK_OLD:-}" ] && cmds+=("$WORK/airlock-old run --env staging --grant github:read -- true")
  cmds+=(
    "$RUN --no-sandbox --network open -- true"
    "$RUN --isolation landlock --network none -- true"
    "$RUN --network none -- true"
    "$RUN $GW -- true"
  )
  echo "## start-up: $label"
  hyperfine -N --warmup 5 --runs "$RUNS" --export-markdown "$WORK/startup-$label.md" "${cmds[@]}" >/dev/null 2>&1
  sed "s#$WORK/##g" "$WORK/startup-$label.md"
  echo
}

startup "10k-files"

if [ "$GIT_COMMITS" -gt 0 ]; then
  cd "$WORK/ws"
  git init -q . && git -c user.name=b -c user.email=b@example.com add -A >/dev/null && git -c user.name=b -c user.email=b@example.com commit -qm base
  for i in $(seq 1 "$GIT_COMMITS"); do
    for f in 0 1 2 3 4; do echo "let v$i = $f;" >> "src/m00$f/f00$((i % 10)).rs"; done
    git -c user.name=b -c user.email=b@example.com commit -qam "c$i"
  done
  startup "10k-files-${GIT_COMMITS}-commits"
fi

# The relay: wrk inside the sandbox against the same server, through the relay
# (gateway-only: own network namespace) and directly (--network open), one connection,
# so the difference in latency is the two added hops.
echo "## relay latency (wrk -t1 -c1 -d5s, one keep-alive connection)"
mkdir -p "$WORK/empty" && cd "$WORK/empty"
for mode in "--network open" "$GW"; do
  echo "### $mode"
  $RUN $mode -- wrk -t1 -c1 -d5s --latency "http://127.0.0.1:$PORT/x" 2>/dev/null | grep -E "Latency|50%|90%|99%|Requests/sec"
done
# And with a new connection per request (what a client without keep-alive pays).
echo "### new connection per request (ab-style: wrk with Connection: close)"
for mode in "--network open" "$GW"; do
  echo "### $mode"
  $RUN $mode -- wrk -t1 -c1 -d5s --latency -H "Connection: close" "http://127.0.0.1:$PORT/x" 2>/dev/null | grep -E "Latency|50%|90%|99%|Requests/sec"
done
