#!/usr/bin/env bash
# Memory over a long run: the test clip concatenated to 30 minutes of stream time (GStreamer's
# concat, timestamps continuous), counted by `junction run`; resident memory is read from /proc at
# every closed 1-minute bin. Passes when the last reading is within 10 % of the one after the first
# minute. Not part of the test suite: it takes several minutes.
#
#   scripts/memory_soak.sh [minutes]        (default 30)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
MINUTES=${1:-30}
CLIP=tests/data/street_topdown_640x360.mp4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The clip is 75.1 s long: enough copies to cover MINUTES.
copies=$(( (MINUTES * 60 + 74) / 75 ))
args=()
for _ in $(seq "$copies"); do args+=(filesrc "location=$CLIP" ! qtdemux ! h264parse ! c.); done
gst-launch-1.0 -q concat name=c ! h264parse ! mp4mux ! filesink "location=$work/long.mp4" "${args[@]}"
echo "made $work/long.mp4: $copies copies of the clip ($(du -h "$work/long.mp4" | cut -f1))"

cargo build --release -q
.venv/bin/python - "$work" <<'PY'
import json, subprocess, sys, time
work = sys.argv[1]
p = subprocess.Popen(["target/release/junction", "run", f"{work}/long.mp4", "--line", "320,60,320,220",
                      "--bins", "1m", "--start", "2026-11-26T08:00:00Z", "--store", f"{work}/soak.db",
                      "--format", "json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
def rss_kib():
    for line in open(f"/proc/{p.pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
readings, crossings, t0 = [], 0, time.time()
for line in p.stdout:
    v = json.loads(line)
    if v["type"] == "event" and v["kind"] == "crossing":
        crossings += 1
    if v["type"] == "report" and v["bin_seconds"] == 60 and not v["partial"]:
        readings.append((v["bin_start"], rss_kib()))
p.wait()
print(f"stream minutes: {len(readings)} closed 1-min bins, {crossings} crossings, {time.time() - t0:.0f} s wall")
for i, (bin_start, kib) in enumerate(readings):
    if i < 3 or i % 5 == 0 or i == len(readings) - 1:
        print(f"  after bin {bin_start}: RSS {kib / 1024:.1f} MiB")
first, last = readings[0][1], readings[-1][1]
peak = max(k for _, k in readings)
change = 100.0 * (last - first) / first
print(f"RSS after the first minute {first / 1024:.1f} MiB, at the end {last / 1024:.1f} MiB ({change:+.1f} %), peak {peak / 1024:.1f} MiB")
sys.exit(0 if abs(change) <= 10.0 else 1)
PY
