#!/usr/bin/env bash
# Load test of the traffic centre: BOXES junction boxes x CAMERAS cameras publishing for MINUTES
# (wall clock) into a Mosquitto broker, landed by `junction-centre` in PostgreSQL 15; everything is
# started here on 127.0.0.1 on temporary directories and stopped by PID at the end.
#
#   scripts/centre_load.sh BOXES CAMERAS MINUTES
#
# Environment: SPEED (simulated seconds per wall-clock second; 1 = the city's peak estimated in the
# README, default 2), INGESTERS (ingesters sharing the subscription, default 1), BATCH (messages per
# transaction, default 500), BROKER_INFLIGHT (Mosquitto's max_inflight_messages, default 1000 as in
# deploy/centre/mosquitto.conf; 20 is Mosquitto's own default), GENERATOR_ARGS (more arguments for
# benches/centre_load.rs, e.g. "--disconnect-every-s 0"), KEEP=1 (keep the logs and data directory).
#
# Prints one JSON line: the generator's counts (sent, stored, lost, duplicated, msgs_per_s,
# lag_p99_s, ...) and the CPU seconds each process used.
set -euo pipefail
BOXES=${1:?usage: scripts/centre_load.sh BOXES CAMERAS MINUTES}
CAMERAS=${2:?usage: scripts/centre_load.sh BOXES CAMERAS MINUTES}
MINUTES=${3:?usage: scripts/centre_load.sh BOXES CAMERAS MINUTES}
SPEED=${SPEED:-2}
INGESTERS=${INGESTERS:-1}
BATCH=${BATCH:-500}
BROKER_INFLIGHT=${BROKER_INFLIGHT:-1000}
GENERATOR_ARGS=${GENERATOR_ARGS:-}
PG=/usr/lib/postgresql/15/bin
cd "$(dirname "$0")/.."

cargo build --release --quiet --bin junction --bin junction-centre
cargo bench --no-run --quiet --bench centre_load 2>/dev/null
GEN=$(ls -t target/release/deps/centre_load-* | grep -v '\.d$' | head -1)

WORK=$(mktemp -d)
PIDS=()
# Ours only, by PID, last started first (ingesters, then PostgreSQL, then the broker): TERM (INT for
# PostgreSQL: its fast shutdown), then KILL after 10 s.
stop() {
    kill "-$2" "$1" 2>/dev/null || return 0
    for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
}
cleanup() {
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        if [ "${PIDS[$i]}" = "${POSTGRES:-}" ]; then stop "${PIDS[$i]}" INT; else stop "${PIDS[$i]}" TERM; fi
    done
    cat "$WORK"/last-metrics-*.txt >&2 2>/dev/null || true
    if [ -n "${KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# CPU seconds (user + system) of a process and its children so far, from /proc.
cpu_s() {
    local total=0 pid
    for pid in "$1" $(pgrep -P "$1" || true); do
        [ -r "/proc/$pid/stat" ] || continue
        total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
    echo "scale=1; $total / $(getconf CLK_TCK)" | bc
}

# Broker: the centre's settings (deploy/centre/mosquitto.conf) on a free port, anonymous on loopback.
MQTT_PORT=$(free_port)
sed -e "s/^listener 1883/listener $MQTT_PORT 127.0.0.1/" -e 's/^allow_anonymous false/allow_anonymous true/' \
    -e '/^password_file/d' -e "s|^persistence_location .*|persistence_location $WORK/|" \
    -e "s/^max_inflight_messages .*/max_inflight_messages $BROKER_INFLIGHT/" \
    deploy/centre/mosquitto.conf > "$WORK/mosquitto.conf"
[ "$(id -u)" = 0 ] && echo "user root" >> "$WORK/mosquitto.conf"
mosquitto -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
PIDS+=($!); MOSQUITTO=$!

# PostgreSQL 15 on a temporary data directory, default durability (fsync on), as the postgres user
# when we are root.
AS=()
if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$WORK"; AS=(setpriv --reuid=postgres --regid=postgres --init-groups); fi
"${AS[@]}" "$PG/initdb" -A trust -U junction -E UTF8 --locale=C -D "$WORK/pg" >/dev/null
PG_PORT=$(free_port)
"${AS[@]}" "$PG/postgres" -D "$WORK/pg" -p "$PG_PORT" -c listen_addresses=127.0.0.1 -k "$WORK" \
    >"$WORK/postgres.log" 2>&1 &
PIDS+=($!); POSTGRES=$!
for _ in $(seq 100); do psql -h 127.0.0.1 -p "$PG_PORT" -U junction -d postgres -Atc 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
CONNINFO="host=127.0.0.1 port=$PG_PORT user=junction dbname=postgres"

INGEST=()
METRICS=()
for i in $(seq "$INGESTERS"); do
    port=$(free_port)
    RUST_LOG=warn target/release/junction-centre --mqtt "mqtt://127.0.0.1:$MQTT_PORT" --postgres "$CONNINFO" \
        --client-id "centre-load-$i" --batch "$BATCH" --metrics "127.0.0.1:$port" >"$WORK/ingester-$i.log" 2>&1 &
    PIDS+=($!); INGEST+=($!); METRICS+=("$port")
done
# Every 5 s: each ingester's resident memory (kB), messages held uncommitted, acknowledgements not
# yet written, connections made (its metrics), and the broker's resident memory (kB).
(
    while sleep 5; do
        broker_rss=$(awk '/^VmRSS/ {print $2}' "/proc/$MOSQUITTO/status" 2>/dev/null || echo 0)
        for i in "${!INGEST[@]}"; do
            rss=$(awk '/^VmRSS/ {print $2}' "/proc/${INGEST[$i]}/status" 2>/dev/null || echo 0)
            m=$(curl -s "http://127.0.0.1:${METRICS[$i]}/metrics")
            pending=$(echo "$m" | awk '/^junction_centre_pending / {print $2}')
            unacked=$(echo "$m" | awk '/^junction_centre_unacked / {print $2}')
            connections=$(echo "$m" | awk '/^junction_centre_connections_total / {print $2}')
            echo "${rss:-0} ${pending:-0} ${unacked:-0} ${connections:-0} ${broker_rss:-0}"
            echo "$m" | grep -E '^junction_centre_(messages_total|rows_total|stale|acks_sent|acks_dropped|qos0|connections)' > "$WORK/last-metrics-$i.txt"
        done
    done
) >"$WORK/samples.txt" 2>/dev/null &
PIDS+=($!)
for _ in $(seq 100); do
    [ "$(psql -h 127.0.0.1 -p "$PG_PORT" -U junction -d postgres -Atc "SELECT count(*) FROM pg_tables WHERE tablename = 'box_status'" 2>/dev/null)" = 1 ] && break
    sleep 0.2
done
sleep 1

# shellcheck disable=SC2086
"$GEN" --mqtt "mqtt://127.0.0.1:$MQTT_PORT" --postgres "$CONNINFO" --boxes "$BOXES" --cameras "$CAMERAS" \
    --minutes "$MINUTES" --speed "$SPEED" $GENERATOR_ARGS >"$WORK/result.json" 2>"$WORK/generator.log" &
GEN_PID=$!
wait "$GEN_PID" || { cat "$WORK/generator.log" >&2; exit 1; }
tail -n 5 "$WORK/generator.log" >&2

ING_CPU=0
for pid in "${INGEST[@]}"; do ING_CPU=$(echo "$ING_CPU + $(cpu_s "$pid")" | bc); done
grep -iE "error|warn" "$WORK"/ingester-*.log | tail -n 5 >&2 || true
python3 - "$WORK/result.json" "$(cpu_s "$MOSQUITTO")" "$(cpu_s "$POSTGRES")" "$ING_CPU" "$INGESTERS" "$BATCH" "$BROKER_INFLIGHT" "$WORK/samples.txt" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
samples = [tuple(map(float, l.split())) for l in open(sys.argv[8]) if len(l.split()) == 5]
r["ingester_max_rss_mb"] = round(max((s[0] for s in samples), default=0) / 1024, 1)
r["ingester_max_pending"] = max((s[1] for s in samples), default=0)
r["ingester_max_unacked"] = max((s[2] for s in samples), default=0)
# Connections each ingester made (1 = never reconnected), the most of any.
r["ingester_connections"] = max((s[3] for s in samples), default=0)
r["broker_max_rss_mb"] = round(max((s[4] for s in samples), default=0) / 1024, 1)
r.update({"cpu_s": {"mosquitto": float(sys.argv[2]), "postgres": float(sys.argv[3]), "ingesters": float(sys.argv[4]),
                    "generator": r.pop("generator_cpu_s", None)},
          "ingesters": int(sys.argv[5]), "batch": int(sys.argv[6]), "broker_max_inflight": int(sys.argv[7])})
print(json.dumps(r))
EOF
