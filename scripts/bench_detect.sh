#!/usr/bin/env bash
# junction detect over the test clip against ONNX Runtime alone on the same frames, in one run.
#
#   scripts/bench_detect.sh [clip] [threads]
#
# Prints each side's frames/s, the ratio, and the share of junction's wall time spent outside ONNX
# Runtime's run() (decode, letterbox, tensor fill, output decoding, NMS, JSON), measured two ways:
# junction's own stage timers, and junction's wall time against the ONNX-Runtime-alone wall time.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CLIP=${1:-tests/data/street_topdown_640x360.mp4}
THREADS=${2:-2}
MODEL=models/yolox_nano.onnx
PY=.venv/bin/python
[ -x "$PY" ] || { echo "run scripts/setup.sh first" >&2; exit 1; }

cargo build --release -q
BIN=target/release/junction
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Alternate the two, ROUNDS times each, and compare medians: the 2-core box is noisy.
ROUNDS=${ROUNDS:-3}
for round in $(seq "$ROUNDS"); do
  "$BIN" detect "$CLIP" --threads "$THREADS" 2>/dev/null | tail -n 1 > "$out/junction.$round.json"
  "$PY" scripts/ort_alone.py "$CLIP" "$MODEL" --threads "$THREADS" > "$out/ort.$round.json"
done

"$PY" - "$out" "$THREADS" "$ROUNDS" <<'PY'
import json, sys, platform, os
d, threads, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
def median(kind):
    runs = sorted((json.load(open(f"{d}/{kind}.{r}.json")) for r in range(1, rounds + 1)), key=lambda s: s["wall_s"])
    print(f"{kind} wall s per run: " + ", ".join(f"{r['wall_s']:.2f}" for r in runs))
    return runs[len(runs) // 2]
j = median("junction")
o = median("ort")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
print(f"machine: {cpu}, {os.cpu_count()} cores; ONNX Runtime {o['version']}, {threads} intra-op threads")
print(f"{'':28}{'frames':>8}{'wall s':>9}{'frames/s':>10}")
print(f"{'junction detect (all)':28}{j['frames_analysed']:>8}{j['wall_s']:>9.2f}{j['fps']:>10.1f}")
print(f"{'onnxruntime alone':28}{o['frames']:>8}{o['wall_s']:>9.2f}{o['fps']:>10.1f}")
print(f"ratio junction/ort-alone frames/s: {j['fps'] / o['fps']:.3f}")
print(f"outside inference (junction's stage timers): {100 * j['outside_inference']:.1f} %")
print(f"outside inference (junction wall vs ort-alone wall, per frame): "
      f"{100 * (1 - (o['wall_s'] / o['frames']) / (j['wall_s'] / j['frames_analysed'])):.1f} %")
s = j["stage_ms"]
print("junction ms/frame: " + ", ".join(f"{k} {v:.3f}" for k, v in s.items()))
PY
