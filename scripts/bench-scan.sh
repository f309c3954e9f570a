#!/usr/bin/env bash
# Whole-process throughput and peak memory of `airlock scan` next to Kingfisher, ripsecrets
# and detect-secrets on the same corpus, side by side in one run.
#
# Usage: scripts/bench-scan.sh [CORPUS=~/.cargo/registry/src] [RUNS=3]
#
# Environment (all optional):
#   AIRLOCK         command prefix for airlock; default: target/release/airlock if it has a
#                   `scan` command, else the engine's example driver (built here, release).
#   KINGFISHER      kingfisher binary       (pip install kingfisher-bin)
#   RIPSECRETS      ripsecrets binary       (cargo install ripsecrets)
#   DETECT_SECRETS  detect-secrets binary   (pip install detect-secrets)
#   SLOW_RUNS       runs for ripsecrets and detect-secrets (default 1: they take minutes)
#   SKIP            comma-separated tools to leave out (e.g. SKIP=detect-secrets)
#   CARGO_TARGET_DIR  where the airlock build lives (default: target)
#
# Each tool scans the whole corpus with its defaults plus what it needs to run offline and
# non-interactively (Kingfisher: --no-validate --git-history none, JSON to a file; airlock:
# JSON to stdout; detect-secrets: `scan --all-files .` inside the corpus, because with a
# path argument outside a git repository it reports nothing). One untimed warm-up per tool
# (page cache; Kingfisher's compiled-rule cache; none for the two slow tools), then RUNS
# timed runs interleaved tool by tool (SLOW_RUNS for the slow ones); the median wall time
# is reported. MB/s = corpus bytes (all regular files) / wall time: every tool is charged
# for the same input even where it skips files. Peak RSS is
# GNU time's %M (the largest resident set of the process or of any one waited-for child).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CORPUS=${1:-$HOME/.cargo/registry/src}
RUNS=${2:-3}
SLOW_RUNS=${SLOW_RUNS:-1}
SKIP=${SKIP:-}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
TIME=/usr/bin/time
[[ -x $TIME ]] || { echo "needs GNU time at /usr/bin/time"; exit 1; }
[[ -d $CORPUS ]] || { echo "corpus $CORPUS does not exist"; exit 1; }
find_bin() { # name, env override, fallbacks…
  local v=$2; shift 2
  if [[ -n $v ]]; then echo "$v"; return; fi
  for c in "$@"; do if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return; fi; done
  echo ""
}
KINGFISHER=$(find_bin kingfisher "${KINGFISHER:-}" kingfisher /var/tmp/scanbench/venv/bin/kingfisher)
RIPSECRETS=$(find_bin ripsecrets "${RIPSECRETS:-}" ripsecrets "$HOME/.cargo/bin/ripsecrets")
DETECT_SECRETS=$(find_bin detect-secrets "${DETECT_SECRETS:-}" detect-secrets /var/tmp/scanbench/venv/bin/detect-secrets)

if [[ -z ${AIRLOCK:-} ]]; then
  if [[ -x $TARGET/release/airlock ]] && "$TARGET/release/airlock" scan --help >/dev/null 2>&1; then
    AIRLOCK="$TARGET/release/airlock scan --format json"
  else
    (cd "$ROOT" && cargo build --release -q -p airlock-scan --example scan)
    AIRLOCK="$TARGET/release/examples/scan --json"
  fi
fi

WORK=$(mktemp -d /tmp/airlock-scan-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
BYTES=$(find "$CORPUS" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
FILES=$(find "$CORPUS" -type f | wc -l)

# tool name → command (run with cwd = corpus; output discarded or to a file in $WORK)
run_tool() {
  local tool=$1
  case $tool in
    airlock) $AIRLOCK "$CORPUS" >"$WORK/airlock.json" 2>"$WORK/airlock.err" ;;
    kingfisher) "$KINGFISHER" scan "$CORPUS" --no-validate --git-history none --format json -o "$WORK/kf.json" --no-update-check >/dev/null 2>"$WORK/kf.err" ;;
    ripsecrets) "$RIPSECRETS" "$CORPUS" >"$WORK/rs.txt" ;;
    detect-secrets) (cd "$CORPUS" && "$DETECT_SECRETS" scan --all-files . >"$WORK/ds.json") ;;
  esac
}
export -f run_tool
export AIRLOCK KINGFISHER RIPSECRETS DETECT_SECRETS CORPUS WORK

TOOLS=()
for t in airlock kingfisher ripsecrets detect-secrets; do
  [[ ",$SKIP," == *",$t,"* ]] && continue
  case $t in
    kingfisher) [[ -n $KINGFISHER ]] || { echo "kingfisher not found: skipped" >&2; continue; } ;;
    ripsecrets) [[ -n $RIPSECRETS ]] || { echo "ripsecrets not found: skipped" >&2; continue; } ;;
    detect-secrets) [[ -n $DETECT_SECRETS ]] || { echo "detect-secrets not found: skipped" >&2; continue; } ;;
  esac
  TOOLS+=("$t")
done

timed() { # tool → appends "wall user sys maxrss_kb rc" to $WORK/$tool.times
  local tool=$1 rc=0
  $TIME -f "%e %U %S %M" -o "$WORK/$tool.t" bash -c "run_tool $tool" || rc=$?
  # exit 1 = findings for airlock/ripsecrets/kingfisher(200) — not an error here
  echo "$(tail -1 "$WORK/$tool.t") $rc" >>"$WORK/$tool.times"
}

echo "corpus: $CORPUS ($FILES files, $((BYTES / 1000000)) MB)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(uname -sr)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "airlock: $AIRLOCK"
# warm-up (page cache, Kingfisher's rule cache); the slow tools get none: they read the
# same, already cached files, and one extra run of detect-secrets costs ~12 minutes
for t in "${TOOLS[@]}"; do
  [[ $t == ripsecrets || $t == detect-secrets ]] || run_tool "$t" >/dev/null 2>&1 || true
done
for ((i = 1; i <= RUNS; i++)); do
  for t in "${TOOLS[@]}"; do
    if [[ $t == ripsecrets || $t == detect-secrets ]] && ((i > SLOW_RUNS)); then continue; fi
    timed "$t"
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$WORK" "$BYTES" "${TOOLS[@]}" <<'PY'
import statistics, sys
work, total = sys.argv[1], int(sys.argv[2])
rows = {}
for tool in sys.argv[3:]:
    runs = [list(map(float, l.split())) for l in open(f"{work}/{tool}.times")]
    wall = statistics.median(r[0] for r in runs)
    rows[tool] = dict(runs=len(runs), wall=wall, walls=[r[0] for r in runs],
                      user=statistics.median(r[1] for r in runs), sys=statistics.median(r[2] for r in runs),
                      rss=max(r[3] for r in runs) / 1024, rc=int(runs[-1][4]))
kf = rows.get("kingfisher")
print()
print("| tool | runs | wall (median) | all walls | MB/s | user s | sys s | peak RSS MiB | airlock speed-up |")
print("|---|---|---|---|---|---|---|---|---|")
for tool, r in rows.items():
    ratio = rows["airlock"]["wall"] and r["wall"] / rows["airlock"]["wall"] if "airlock" in rows else 0
    walls = " ".join(f"{w:.2f}" for w in r["walls"])
    print(f"| {tool} | {r['runs']} | {r['wall']:.2f} s | {walls} | {total / 1e6 / r['wall']:.3g} | {r['user']:.2f} | {r['sys']:.2f} "
          f"| {r['rss']:.0f} | {ratio:.2f}× |")
if kf and "airlock" in rows:
    print(f"\nairlock vs Kingfisher: {kf['wall'] / rows['airlock']['wall']:.2f}× the throughput (target ≥ 2×); "
          f"airlock peak RSS {rows['airlock']['rss']:.0f} MiB (target < 200 MiB)")
PY
