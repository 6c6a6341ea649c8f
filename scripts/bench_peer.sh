#!/usr/bin/env bash
# junction against the Python peer (benches/peer/peer.py: OpenCV decode, the same YOLOX-Nano through
# onnxruntime, roboflow trackers' ByteTrack, supervision's LineZone) on the same clip, same line, same
# intra-op thread count, alternated in one run.
#
#   scripts/bench_peer.sh [clip] [threads] [line x1,y1,x2,y2] [truth]
#
# Prints each one's frames/s (median of ROUNDS runs, default 3), the ratio, and each one's count
# against the ground truth (8 crossings of x = 320 on the bundled clip: tests/data/README.md).
# junction runs twice per round: detecting on every frame, and with `--detect-every 2` (the tracker
# predicts every other frame, detecting anyway while a new track awaits confirmation); both analyse
# and count on every frame, as the peer does.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CLIP=${1:-tests/data/street_topdown_640x360.mp4}
THREADS=${2:-2}
LINE=${3:-320,60,320,220}
TRUTH=${4:-8}
MODEL=models/yolox_nano.onnx
PY=.venv/bin/python
[ -x "$PY" ] || { echo "run scripts/setup.sh first" >&2; exit 1; }
# The peer's own dependencies, into the same venv (onnxruntime is already pinned there by setup.sh).
"$PY" -c "import supervision, trackers, cv2" 2>/dev/null \
  || .venv/bin/pip install -q supervision trackers opencv-python-headless

cargo build --release -q
BIN=target/release/junction
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

ROUNDS=${ROUNDS:-3}
for round in $(seq "$ROUNDS"); do
  "$PY" benches/peer/peer.py --clip "$CLIP" --model "$MODEL" --line "$LINE" --threads "$THREADS" \
    > "$out/peer.$round.json"
  # Wall time of the whole process, start-up and model loading included (the peer's clock starts
  # after its session is built): if anything, this favours the peer.
  for every in 1 2; do
    start=$EPOCHREALTIME
    "$BIN" run "$CLIP" --line "$LINE" --threads "$THREADS" --detect-every "$every" --store "$out/j$every.$round.db" \
      --summary "$out/junction$every.$round.summary.json" > /dev/null 2>&1
    end=$EPOCHREALTIME
    echo "{\"start\": $start, \"end\": $end}" > "$out/junction$every.$round.json"
  done
done

"$PY" - "$out" "$THREADS" "$ROUNDS" "$TRUTH" "$LINE" "$CLIP" <<'PY'
import json, sys, os, platform
d, threads, rounds, truth, line, clip = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
peer = sorted((json.load(open(f"{d}/peer.{r}.json")) for r in range(1, rounds + 1)), key=lambda p: p["wall_s"])
def junction(every):
    runs = []
    for r in range(1, rounds + 1):
        t = json.load(open(f"{d}/junction{every}.{r}.json"))
        s = json.load(open(f"{d}/junction{every}.{r}.summary.json"))
        counts = s["lines"][0]
        runs.append({"wall_s": t["end"] - t["start"], "frames": s["frames"], "detected": s["frames_detected"],
                     "in": counts["in"], "out": counts["out"]})
    return sorted(runs, key=lambda j: j["wall_s"])
p = peer[rounds // 2]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
print(f"machine: {cpu}, {os.cpu_count()} cores; clip {clip}; line {line}; {threads} intra-op threads; "
      f"median of {rounds} alternated runs")
print("peer wall s:               " + ", ".join(f"{x['wall_s']:.2f}" for x in peer))
rows = []
for every in (1, 2):
    runs = junction(every)
    print(f"junction every {every} wall s:   " + ", ".join(f"{x['wall_s']:.2f}" for x in runs))
    rows.append((every, runs[rounds // 2]))
print(f"{'':36}{'frames':>7}{'detected':>9}{'wall s':>8}{'frames/s':>10}{'ratio':>7}{'in':>4}{'out':>4}{'total':>6}{'|err|':>6}")
pt = p["in"] + p["out"]
print(f"{'peer (supervision+trackers+ort)':36}{p['frames']:>7}{p['frames']:>9}{p['wall_s']:>8.2f}{p['fps']:>10.1f}"
      f"{1.0:>7.2f}{p['in']:>4}{p['out']:>4}{pt:>6}{abs(pt - truth):>6}")
for every, j in rows:
    fps = j["frames"] / j["wall_s"]
    jt = j["in"] + j["out"]
    name = f"junction run, detect every {every}"
    print(f"{name:36}{j['frames']:>7}{j['detected']:>9}{j['wall_s']:>8.2f}{fps:>10.1f}"
          f"{fps / p['fps']:>7.2f}{j['in']:>4}{j['out']:>4}{jt:>6}{abs(jt - truth):>6}")
print(f"ground truth: {truth} crossings")
PY
