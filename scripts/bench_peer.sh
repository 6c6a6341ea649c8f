#!/usr/bin/env bash
# junction against the Python peer (benches/peer/peer.py: OpenCV decode, YOLOX-Nano through
# onnxruntime on every frame, roboflow trackers' ByteTrack, supervision's LineZone) on the same clip,
# same line, same intra-op thread count, alternated: ROUNDS pairs (default 5) of whole processes.
#
#   scripts/bench_peer.sh [clip line truth]...
#
# Without arguments: the bundled quiet street clip (8 crossings of x = 320, tests/data/README.md) and
# the bundled busy motorway clip (11 cars crossing y = 200 on the main carriageway,
# tests/data/nl_motorway_degirum.truth.toml). junction runs at its defaults (`junction run`: detect
# every 2nd frame, skip still frames, inputs in the frame's shape); the peer detects on every frame
# with the square 416 × 416 model it was written for. Wall time is the whole process, start-up and
# model loading included for both. Prints per clip the median wall times, their ratio, and both
# counts against the truth.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-5}
if [ $# -eq 0 ]; then
  set -- tests/data/street_topdown_640x360.mp4 320,60,320,220 8 \
         tests/data/nl_motorway_degirum.mp4 280,200,720,200 11
fi
PY=.venv/bin/python
[ -x "$PY" ] || { echo "run scripts/setup.sh first" >&2; exit 1; }
"$PY" -c "import supervision, trackers, cv2" 2>/dev/null \
  || .venv/bin/pip install -q supervision trackers opencv-python-headless
# BIN=path: another junction build (e.g. the one before a change), compared with the same peer runs.
if [ -z "${BIN:-}" ]; then cargo build --release -q; BIN=target/release/junction; fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
echo "machine: $cpu, $(nproc) cores; $THREADS intra-op threads each; $ROUNDS alternated pairs; load $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-34s %6s %9s %9s %7s %11s %11s %6s\n" clip truth "peer s" "junct. s" ratio "peer count" "junct count" detected
while [ $# -ge 3 ]; do
  CLIP=$1 LINE=$2 TRUTH=$3
  shift 3
  name=$(basename "$CLIP" .mp4)
  for round in $(seq "$ROUNDS"); do
    start=$EPOCHREALTIME
    "$PY" benches/peer/peer.py --clip "$CLIP" --model models/yolox_nano.onnx --line "$LINE" --threads "$THREADS" \
      > "$out/$name.peer.$round.json"
    end=$EPOCHREALTIME
    echo "{\"start\": $start, \"end\": $end}" > "$out/$name.peer.$round.time.json"
    start=$EPOCHREALTIME
    "$BIN" run "$CLIP" --line "$LINE" --threads "$THREADS" --store "$out/$name.$round.db" \
      --summary "$out/$name.junction.$round.json" > /dev/null 2>&1
    end=$EPOCHREALTIME
    echo "{\"start\": $start, \"end\": $end}" > "$out/$name.junction.$round.time.json"
  done
  "$PY" - "$out" "$name" "$ROUNDS" "$TRUTH" <<'PY'
import json, statistics, sys
d, name, rounds, truth = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def wall(kind, r):
    t = json.load(open(f"{d}/{name}.{kind}.{r}.time.json"))
    return t["end"] - t["start"]
peer_w = [wall("peer", r) for r in range(1, rounds + 1)]
junc_w = [wall("junction", r) for r in range(1, rounds + 1)]
p = json.load(open(f"{d}/{name}.peer.1.json"))
s = json.load(open(f"{d}/{name}.junction.1.json"))
pc = p["in"] + p["out"]
jc = s["lines"][0]["in"] + s["lines"][0]["out"]
pm, jm = statistics.median(peer_w), statistics.median(junc_w)
print(f"{name:<34} {truth:>6} {pm:>9.2f} {jm:>9.2f} {pm / jm:>6.2f}x {pc:>4} (|err| {abs(pc - truth)}) {jc:>4} (|err| {abs(jc - truth)}) {s['frames_detected']:>4}/{s['frames']}")
print(f"  peer wall s: {', '.join(f'{x:.2f}' for x in peer_w)}; junction wall s: {', '.join(f'{x:.2f}' for x in junc_w)}")
PY
done
