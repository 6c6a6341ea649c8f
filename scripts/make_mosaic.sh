#!/usr/bin/env bash
# Small vehicles from real footage: the bundled street clip tiled N × N into one frame (N = 3: 1920 ×
# 1080, each copy 640 × 360 at its own pixels), with a truth file of N² lines, one across each copy
# where the bundled truth file has its line, each expecting what that one expects. Letterboxed whole
# into YOLOX-Nano's 416 input, a car shrinks from about 100 px to 22; the benches of tiles and input
# size (benches/README.md, "Small vehicles") run `junction eval --sweep` on it.
#
#   scripts/make_mosaic.sh [N: 3] [out: target/mosaic]
#
# Needs ffmpeg (Debian: apt-get install ffmpeg), the same one ../shared/tools/*scan.py use.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${1:-3}
OUT=${2:-$ROOT/target/mosaic}
CLIP=$ROOT/tests/data/street_topdown_640x360.mp4
command -v ffmpeg >/dev/null || { echo "make_mosaic.sh: ffmpeg not found (apt-get install ffmpeg)" >&2; exit 1; }
mkdir -p "$OUT"
name="street_mosaic_${N}x${N}"
# split into N² copies, N rows of N side by side, stacked; timestamps passed through (the clip's frame
# rate is variable).
filter="[0:v]split=$((N * N))"
for k in $(seq 0 $((N * N - 1))); do filter="$filter[c$k]"; done
filter="$filter;"
for r in $(seq 0 $((N - 1))); do
  for c in $(seq 0 $((N - 1))); do filter="$filter[c$((r * N + c))]"; done
  filter="$filter hstack=$N[r$r];"
done
for r in $(seq 0 $((N - 1))); do filter="$filter[r$r]"; done
filter="$filter vstack=$N"
ffmpeg -v error -y -i "$CLIP" -filter_complex "$filter" -c:v libx264 -preset fast -crf 23 -fps_mode passthrough -an \
  "$OUT/$name.mp4"
python3 - "$N" "$OUT/$name.truth.toml" "$name.mp4" <<'PY'
import sys
n, path, clip = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with open(path, "w") as f:
    f.write(f"# Made by scripts/make_mosaic.sh: tests/data/street_topdown_640x360.mp4 tiled {n} x {n}; each copy's\n")
    f.write("# line and counts are those of tests/data/street_topdown_640x360.truth.toml.\n")
    f.write(f'clip = "{clip}"\nframe_size = [{640 * n}, {360 * n}]\n')
    for r in range(n):
        for c in range(n):
            x, y = 320 + 640 * c, 360 * r
            f.write(f'\n[[line]]\nid = "x320-r{r}c{c}"\npoints = [[{x}, {y + 60}], [{x}, {y + 220}]]\n')
            f.write('in_side = "left"\nanchor = "centre"\n')
            f.write('expected = { in = { car = 3 }, out = { car = 4, bus = 1 } }\n')
PY
echo "$OUT/$name.mp4"
echo "$OUT/$name.truth.toml"
