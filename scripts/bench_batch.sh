#!/usr/bin/env bash
# Batching several cameras' frames into one model run: N copies of the clip as file cameras (each
# frame waits for inference, so frames of every camera are always waiting) analysed by one
# `junction run`, detecting on every frame, with `[detector] max_batch = 1` (one frame per run) and
# `max_batch = N` (the cameras' frames together), alternated ROUNDS times. Only models with a dynamic
# batch dimension batch: DEIMv2-Femto and the dynamic YOLOX-Nano export.
#
#   ROUNDS=3 scripts/bench_batch.sh [cameras: 2] [models: "deimv2_femto yolox_nano_640"] [threads: 2]
#
# Prints the median analysed frames/s of all cameras together for each setting, and the ratio.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
N=${1:-2}
MODELS=${2:-deimv2_femto yolox_nano_640}
THREADS=${3:-2}
ROUNDS=${ROUNDS:-3}
CLIP=$ROOT/tests/data/street_topdown_640x360.mp4
cargo build --release -q
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
echo "machine: $cpu, $(nproc) cores; $N cameras of the 640x360 clip (753 frames each); $THREADS intra-op threads; $ROUNDS rounds"
for model in $MODELS; do
  for round in $(seq "$ROUNDS"); do
    for batch in 1 "$N"; do
      cfg=$out/site-$model-$batch.toml
      {
        echo "site = \"batch\""
        echo "[detector]"
        echo "model = \"$ROOT/models/$model.toml\""
        echo "threads = $THREADS"
        echo "every = 1"
        echo "max_batch = $batch"
        for i in $(seq "$N"); do
          echo "[[camera]]"
          echo "id = \"cam$i\""
          echo "uri = \"$CLIP\""
          echo "on_inference_busy = \"block\""
        done
        echo "[store]"
        echo "path = \"$out/b-$model-$batch-$round.db\""
      } > "$cfg"
      start=$EPOCHREALTIME
      target/release/junction run --config "$cfg" --summary "$out/s.json" > /dev/null 2>"$out/err.log" \
        || { cat "$out/err.log" >&2; exit 1; }
      end=$EPOCHREALTIME
      python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print(sum(c['frames'] for c in s['cameras']) / (float(sys.argv[3]) - float(sys.argv[2])))" \
        "$out/s.json" "$start" "$end" >> "$out/$model-$batch.fps"
    done
  done
  python3 - "$out/$model-1.fps" "$out/$model-$N.fps" "$model" "$N" <<'PY'
import statistics, sys
one = [float(x) for x in open(sys.argv[1])]
many = [float(x) for x in open(sys.argv[2])]
m1, mn = statistics.median(one), statistics.median(many)
print(f"{sys.argv[3]:<16} max_batch 1: {m1:6.1f} frames/s   max_batch {sys.argv[4]}: {mn:6.1f} frames/s   ratio {mn / m1:.2f}"
      f"   (rounds: {', '.join(f'{x:.1f}' for x in one)} | {', '.join(f'{x:.1f}' for x in many)})")
PY
done
