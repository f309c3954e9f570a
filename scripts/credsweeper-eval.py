#!/usr/bin/env python3
"""Recall and false positives of secret scanners on the CredSweeper test samples.

Usage:
  scripts/credsweeper-eval.py [--corpus DIR] [--tools airlock,kingfisher,ripsecrets,detect-secrets]
                              [--airlock CMD] [--kingfisher BIN] [--ripsecrets BIN]
                              [--detect-secrets BIN] [--list-misses TOOL] [--list-fps TOOL]
                              [--markdown]

The corpus (default ../shared/corpora/credsweeper relative to the repository) holds
`samples/` and CredSweeper's own `expected-output.json`. Python 3 standard library only.

How findings are matched (per file + line):
  * An expected finding is one entry of expected-output.json: a rule plus one or more
    `line_data_list` items (path, line_num). Multi-line findings (PEM keys, where
    CredSweeper lists every line of the key; AWS id+secret pairs) become one span
    [first line, last line]. Identical spans in the same file (two CredSweeper rules on
    the same line) count once: the unit is "a place in a file that holds a credential".
  * A span is recalled when the tool reports at least one finding in that file whose
    line falls inside the span.
  * A tool finding is a distinct (file, line). It is a false positive when its line is in
    no expected span of that file. "FP on negative samples" counts the false positives in
    files that CredSweeper marks as negative by name (ending in `_n`, or containing
    "negative"); "FP elsewhere" are the rest (lines of positive samples that CredSweeper
    does not list — some are debatable, see BENCHMARKS.md).
  * Findings inside archives (Kingfisher extracts them) are attributed to the archive
    file, with the line reported by the tool (which is a line inside the member, so
    these rarely match: none of the expected findings is inside an archive).

Each tool runs with its defaults plus the flags needed to scan everything offline:
  airlock        <cmd> --format json SAMPLES (or the example driver: --json SAMPLES)
  kingfisher     scan SAMPLES --no-validate --no-dedup --git-history none --format json
  ripsecrets     SAMPLES (one `path:line:match` per finding; exits 1 when it finds any)
  detect-secrets scan --all-files .   (run inside SAMPLES: with a path argument it
                 looks for a git repository and reports nothing)
"""

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_CORPUS = os.path.normpath(os.path.join(REPO, "..", "shared", "corpora", "credsweeper"))


def is_negative(name):
    base = os.path.basename(name)
    return base.endswith("_n") or "negative" in base.lower()


def load_expected(corpus):
    """{file (relative to samples/): set of (first, last) spans}"""
    with open(os.path.join(corpus, "expected-output.json"), encoding="utf-8") as f:
        data = json.load(f)
    spans = defaultdict(set)
    for entry in data:
        by_file = defaultdict(list)
        for ld in entry["line_data_list"]:
            p = ld["path"]
            for prefix in ("./tests/samples/", "tests/samples/"):
                if p.startswith(prefix):
                    p = p[len(prefix):]
            by_file[p].append(int(ld["line_num"]))
        for p, lines in by_file.items():
            spans[p].add((min(lines), max(lines)))
    return spans


def rel(path, samples):
    """Path of a finding relative to samples/; archive members map to the archive."""
    p = path
    samples_abs = os.path.abspath(samples)
    if os.path.isabs(p):
        p = os.path.relpath(p, samples_abs)
    p = p.replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    # Kingfisher reports archive members as `archive.tar | member` or `archive.zip/member`
    # style paths; attribute them to the top-level sample file.
    first = re.split(r"\s*\|\s*|!", p, maxsplit=1)[0]
    parts = first.split("/")
    for i in range(1, len(parts) + 1):
        cand = "/".join(parts[:i])
        if os.path.isfile(os.path.join(samples_abs, cand)):
            return cand
    return first


def run(cmd, cwd=None):
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


def findings_airlock(samples, cmd):
    argv = shlex.split(cmd)
    if os.path.basename(argv[0]) == "scan" and "examples" in argv[0]:
        argv += ["--json", samples]
    else:
        argv += ["--format", "json", samples]
    rc, out, err = run(argv)
    if rc not in (0, 1):
        sys.exit(f"airlock failed ({rc}): {err.strip()[:500]}")
    doc = json.loads(out)
    return [(rel(f["path"], samples), int(f["line"])) for f in doc["findings"]]


def findings_kingfisher(samples, binary):
    with tempfile.TemporaryDirectory() as tmp:
        out_path = os.path.join(tmp, "kf.json")
        rc, _, err = run([binary, "scan", samples, "--no-validate", "--no-dedup", "--git-history", "none",
                          "--format", "json", "-o", out_path, "--no-update-check"])
        if not os.path.exists(out_path):
            # older/newer versions without --no-update-check
            rc, _, err = run([binary, "scan", samples, "--no-validate", "--no-dedup", "--git-history", "none",
                              "--format", "json", "-o", out_path])
        if not os.path.exists(out_path):
            sys.exit(f"kingfisher failed ({rc}): {err.strip()[:500]}")
        with open(out_path, encoding="utf-8") as f:
            doc = json.load(f)
    out = []
    for item in doc.get("findings", []):
        fd = item.get("finding", item)
        out.append((rel(fd["path"], samples), int(fd["line"])))
    return out


RIPSECRETS_LINE = re.compile(r"^(.*?):(\d+):")


def findings_ripsecrets(samples, binary):
    rc, out, err = run([binary, samples])
    if rc not in (0, 1):
        sys.exit(f"ripsecrets failed ({rc}): {err.strip()[:500]}")
    res = []
    for line in out.splitlines():
        # strip ANSI colours if any
        line = re.sub(r"\x1b\[[0-9;]*m", "", line)
        m = RIPSECRETS_LINE.match(line)
        if m:
            res.append((rel(m.group(1), samples), int(m.group(2))))
    return res


def findings_detect_secrets(samples, binary):
    rc, out, err = run([binary, "scan", "--all-files", "."], cwd=samples)
    if rc != 0:
        sys.exit(f"detect-secrets failed ({rc}): {err.strip()[:500]}")
    doc = json.loads(out)
    res = []
    for fname, items in doc.get("results", {}).items():
        for it in items:
            res.append((rel(fname, samples), int(it["line_number"])))
    return res


def score(expected, found):
    found_lines = sorted(set(found))
    by_file = defaultdict(set)
    for p, ln in found_lines:
        by_file[p].add(ln)
    total = sum(len(s) for s in expected.values())
    recalled = 0
    misses = []
    for p, spans in sorted(expected.items()):
        for a, b in sorted(spans):
            if any(a <= ln <= b for ln in by_file.get(p, ())):
                recalled += 1
            else:
                misses.append((p, a, b))
    fps = []
    for p, ln in found_lines:
        if not any(a <= ln <= b for a, b in expected.get(p, ())):
            fps.append((p, ln))
    fp_neg = [x for x in fps if is_negative(x[0])]
    return {
        "expected": total,
        "recalled": recalled,
        "recall": recalled / total if total else 0.0,
        "finding_lines": len(found_lines),
        "tp_lines": len(found_lines) - len(fps),
        "fp": len(fps),
        "fp_negative": len(fp_neg),
        "fp_other": len(fps) - len(fp_neg),
        "misses": misses,
        "fps": fps,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=DEFAULT_CORPUS)
    ap.add_argument("--tools", default="airlock,kingfisher,ripsecrets,detect-secrets")
    ap.add_argument("--airlock", default=os.environ.get("AIRLOCK_SCAN_CMD", "airlock scan"),
                    help="command prefix for airlock, e.g. 'target/release/airlock scan' or the example driver path")
    ap.add_argument("--kingfisher", default=os.environ.get("KINGFISHER", "kingfisher"))
    ap.add_argument("--ripsecrets", default=os.environ.get("RIPSECRETS", "ripsecrets"))
    ap.add_argument("--detect-secrets", dest="detect_secrets", default=os.environ.get("DETECT_SECRETS", "detect-secrets"))
    ap.add_argument("--list-misses", default="", help="tool whose missed expected findings to list")
    ap.add_argument("--list-fps", default="", help="tool whose false-positive lines to list")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--json", dest="json_out", default="", help="write per-tool results to this file")
    args = ap.parse_args()

    samples = os.path.join(args.corpus, "samples")
    expected = load_expected(args.corpus)
    runners = {
        "airlock": lambda: findings_airlock(samples, args.airlock),
        "kingfisher": lambda: findings_kingfisher(samples, args.kingfisher),
        "ripsecrets": lambda: findings_ripsecrets(samples, args.ripsecrets),
        "detect-secrets": lambda: findings_detect_secrets(samples, args.detect_secrets),
    }
    results = {}
    for tool in [t.strip() for t in args.tools.split(",") if t.strip()]:
        results[tool] = score(expected, runners[tool]())

    n_files = len(os.listdir(samples))
    n_neg = sum(1 for f in os.listdir(samples) if is_negative(f))
    print(f"corpus: {samples} ({n_files} files, {n_neg} negative by name); "
          f"expected: {next(iter(results.values()))['expected'] if results else 0} findings "
          f"(file + line span) in {len(expected)} files")
    cols = ["tool", "recalled", "recall", "finding lines", "FP lines", "FP on negative samples", "FP elsewhere"]
    rows = []
    for tool, r in results.items():
        rows.append([tool, f"{r['recalled']}/{r['expected']}", f"{100 * r['recall']:.1f}%", str(r["finding_lines"]),
                     str(r["fp"]), str(r["fp_negative"]), str(r["fp_other"])])
    if args.markdown:
        print("| " + " | ".join(cols) + " |")
        print("|" + "|".join(["---"] * len(cols)) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
        print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
        for row in rows:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
    if args.list_misses in results:
        print(f"\nmissed by {args.list_misses}:")
        for p, a, b in results[args.list_misses]["misses"]:
            print(f"  {p}:{a}" + (f"-{b}" if b != a else ""))
    if args.list_fps in results:
        print(f"\nfalse-positive lines of {args.list_fps}:")
        for p, ln in results[args.list_fps]["fps"]:
            print(f"  {p}:{ln}")
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump({t: {k: v for k, v in r.items()} for t, r in results.items()}, f, indent=1)


if __name__ == "__main__":
    main()
