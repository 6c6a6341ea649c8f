#!/usr/bin/env bash
# N cameras on one box: N copies of the clip replayed at their own rate as live cameras
# (`realtime = true`, `on_inference_busy = "keep_latest"`), each with the example street's rules,
# analysed by one `junction run`. Prints frames analysed per second per camera and in total, the
# share of frames dropped because the box could not keep up, the detections deferred to the next
# frame by the scheduler (pipeline/schedule.rs), and each camera's count against the count of one
# camera read as a file (every frame analysed).
#
#   scripts/bench_scale.sh ["1 2 4 8"] [detect-every: "2", junction's default] [threads: 2]
#
# Every other setting is junction's default (motion gating on: MOTION=off turns it off).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
COUNTS=${1:-1 2 4 8}
EVERY=${2:-2}
MOTION=${MOTION:-on}
THREADS=${3:-2}
CLIP=$ROOT/tests/data/street_topdown_640x360.mp4
cargo build --release -q
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
echo "machine: $cpu, $(nproc) cores; clip 640x360, ~10 frames/s of real time (753 frames, 75.1 s); $THREADS intra-op threads"
printf "%8s %7s %14s %14s %10s %9s %9s\n" cameras every "analysed/s/cam" "analysed/s all" "dropped %" "detected" "counted"
# One site file: N cameras; "file" as the last argument: one camera read as a file, every frame
# analysed (the count a camera gets when the box keeps up).
site() {
  local n=$1 every=$2 mode=${3:-live}
  echo "site = \"scale\""
  echo "[detector]"
  echo "model = \"$ROOT/models/yolox_nano.toml\""
  echo "threads = $THREADS"
  echo "every = $every"
  if [ "$MOTION" = off ]; then echo "[motion]"; echo "enabled = false"; fi
  for i in $(seq "$n"); do
    echo "[[camera]]"
    echo "id = \"cam$i\""
    echo "uri = \"$CLIP\""
    echo "calibration = \"$ROOT/calibration/example-street/street.toml\""
    if [ "$mode" = live ]; then
      echo "on_inference_busy = \"keep_latest\""
      echo "realtime = true"
    fi
  done
  echo "[store]"
  echo "path = \"$out/scale-$n-$every-$mode.db\""
}
for every in $EVERY; do
  site 1 "$every" file > "$out/alone.toml"
  target/release/junction run --config "$out/alone.toml" --summary "$out/alone-$every.json" > /dev/null 2>"$out/alone.log" \
    || { cat "$out/alone.log" >&2; exit 1; }
  for n in $COUNTS; do
    cfg=$out/site-$n-$every.toml
    site "$n" "$every" > "$cfg"
    start=$EPOCHREALTIME
    target/release/junction run --config "$cfg" --summary "$out/s-$n-$every.json" > /dev/null 2>"$out/err-$n-$every.log" \
      || { cat "$out/err-$n-$every.log" >&2; exit 1; }
    end=$EPOCHREALTIME
    python3 - "$out/s-$n-$every.json" "$n" "$every" "$start" "$end" "$out/alone-$every.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); n = int(sys.argv[2]); every = sys.argv[3]
def counts(summary):
    per = {}
    for line in summary["lines"]:
        per[line["camera"]] = per.get(line["camera"], 0) + line["in"] + line["out"]
    return per
alone = sum(counts(json.load(open(sys.argv[6]))).values())
counted = counts(s)
wall = float(sys.argv[5]) - float(sys.argv[4])
cams = s["cameras"]
analysed = sum(c["frames"] for c in cams)
dropped = sum(c["dropped"] for c in cams)
detected = sum(c["detected"] for c in cams)
deferred = sum(c.get("deferred", 0) for c in cams)
worst = max(100 * c["dropped"] / max(1, c["frames"] + c["dropped"]) for c in cams)
mean = 100 * dropped / max(1, analysed + dropped)
low, high = min(counted.get(c["id"], 0) for c in cams), max(counted.get(c["id"], 0) for c in cams)
mean_count = sum(counted.get(c["id"], 0) for c in cams) / n
span = f"{low}" if low == high else f"{low}-{high}"
print(f"{n:>8} {every:>7} {analysed / n / wall:>14.1f} {analysed / wall:>14.1f} {mean:>9.1f}% {detected:>9} {span:>9}"
      f"   (worst camera {worst:.1f} % dropped, {worst / mean if mean > 0 else 1:.2f}x the mean; {deferred} detections deferred;"
      f" counted {mean_count:.2f} a camera against {alone} alone as a file; wall {wall:.1f} s)")
if "VERBOSE" in __import__("os").environ:
    for c in cams:
        print(f"    {c['id']}: frames {c['frames']} dropped {c['dropped']} detected {c['detected']} deferred {c.get('deferred', 0)}")
PY
  done
done
