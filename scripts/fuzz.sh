#!/usr/bin/env bash
# Fuzzes junction's parsers of hostile input with libFuzzer (cargo-fuzz, a nightly toolchain): the site
# and calibration files, the console's rules bodies, the centre's MQTT payloads and stored reports
# (junction::fuzzing; targets in pipeline/fuzz/). Each target runs SECONDS (default 600) from its
# seeds (pipeline/fuzz/corpus/<target>/) plus what earlier runs found (target/fuzz/corpus/<target>/).
# A crash stops the script: its input is in pipeline/fuzz/artifacts/<target>/; copy it into
# pipeline/fuzz/regressions/<target>/, where the stable smoke test (tests/fuzz.rs) replays it in
# every `cargo test`, then fix the code.
#
#   scripts/fuzz.sh [SECONDS: 600] [TARGETS: all]
#
# Needs: rustup's nightly toolchain, cargo-fuzz (installed from crates.io if missing).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SECS=${1:-600}
TARGETS=${2:-"site calibration rules_body centre_payload report_merge"}
rustup toolchain list | grep -q '^nightly' || { echo "fuzz.sh: needs a nightly toolchain (rustup toolchain install nightly)" >&2; exit 1; }
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$ROOT/.onnxruntime/libonnxruntime.so}
cargo +nightly fuzz build --fuzz-dir pipeline/fuzz -O
for t in $TARGETS; do
  mkdir -p "target/fuzz/corpus/$t"
  log="target/fuzz/$t.log"
  echo "== $t: $SECS s"
  # -rss_limit_mb: a target that grows without bound is a finding too; -timeout: so is one that hangs.
  if ! cargo +nightly fuzz run --fuzz-dir pipeline/fuzz -O "$t" "target/fuzz/corpus/$t" "pipeline/fuzz/corpus/$t" -- \
      -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 -max_len=65536 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz.sh: $t crashed; its input is in pipeline/fuzz/artifacts/$t/" >&2
    exit 1
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs" "$log" | sed "s/^/   /"
  echo "   corpus: $(ls "target/fuzz/corpus/$t" | wc -l) inputs"
done
