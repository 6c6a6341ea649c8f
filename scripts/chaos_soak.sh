#!/usr/bin/env bash
# Fault-injection soak (not in CI): random SIGKILLs of junction, broker restarts and camera stops over
# several cameras, then checks that no bin is lost, that an MQTT subscriber keeping the highest
# revision per id sees the store, and that a replayed file counts what a clean run counts.
#   scripts/chaos_soak.sh [--minutes 12] [--cameras 2] [--seed N] [--keep]
# Prints one JSON line of figures; exits non-zero when a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec /usr/bin/python3 scripts/chaos_soak.py "$@"
