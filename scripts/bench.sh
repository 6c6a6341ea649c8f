#!/usr/bin/env bash
# Every criterion bench, then a summary table of the per-item times from criterion's estimates.
#
#   scripts/bench.sh            # all benches (about 10 minutes on 2 cores)
#   scripts/bench.sh detect     # one bench file
#
# The end-to-end bench also prints its breakdown (waiting for frames, inference, the rest) and the
# share of time outside ONNX Runtime. Benches needing ONNX Runtime skip themselves without it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BENCHES=${*:-detect track stages e2e}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for b in $BENCHES; do
  cargo bench --bench "$b" 2>&1 | tee -a "$log" | grep -E "^(e2e \(|[a-z_]+/[a-z0-9_/]+$|\s+time:)" || true
done
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
echo
echo "machine: $cpu, $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ)"
python3 - "$ROOT/target/criterion" <<'PY'
import json, os, sys
root = sys.argv[1]
rows = []
for dirpath, _, files in os.walk(root):
    if "estimates.json" in files and dirpath.endswith(os.path.join("new")):
        name = os.path.relpath(os.path.dirname(dirpath), root)
        if name.startswith("report"):
            continue
        e = json.load(open(os.path.join(dirpath, "estimates.json")))
        rows.append((name, e["mean"]["point_estimate"], e["mean"]["confidence_interval"]))
def fmt(ns):
    for unit, f in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= f:
            return f"{ns / f:.3g} {unit}"
    return f"{ns:.3g} ns"
print(f"{'bench':62} {'mean':>10} {'95 % interval':>24}")
for name, mean, ci in sorted(rows):
    print(f"{name:62} {fmt(mean):>10} {fmt(ci['lower_bound']) + ' – ' + fmt(ci['upper_bound']):>24}")
PY
