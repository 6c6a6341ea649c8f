#!/usr/bin/python3
"""Fault-injection soak for `junction run` (scripts/chaos_soak.sh; not in CI).

Several cameras (live RTSP test cameras, a live test pattern, the bundled clip replayed as a file)
counted by one box publishing to a real Mosquitto, with a subscriber recording everything. At random
moments: junction is SIGKILLed and started again, the broker is restarted, an RTSP camera is stopped
for a while. At the end it checks:

- every 1-minute bin the box was running for has a report, for every live camera (lost must be 0);
- the subscriber's view, keeping the highest revision per report id, equals the store;
- the replayed file's crossings (the volumes of its reports) equal a clean run's.

It prints one JSON line of figures and exits non-zero when a check fails. Everything runs on
127.0.0.1 in a temporary folder; only processes it started are signalled, by PID.
"""
import argparse
import collections
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JUNCTION = os.path.join(ROOT, "target", "release", "junction")
BIN = 60
FILE_START = "2026-11-26T08:00:00Z"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


class Proc:
    """A child process we started, stopped by its PID."""

    def __init__(self, name, args, **kw):
        self.name, self.args, self.kw, self.p = name, args, kw, None

    def start(self):
        self.p = subprocess.Popen(self.args, **self.kw)
        return self

    def alive(self) -> bool:
        return self.p is not None and self.p.poll() is None

    def stop(self, sig=signal.SIGTERM, wait=60):
        if self.alive():
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        rc = None if self.p is None else self.p.returncode
        self.p = None
        return rc


def bin_start(ts: float) -> int:
    return int(ts) // BIN * BIN


def iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def volumes(db: str, camera: str) -> dict:
    """Crossings per counter/direction/class over a camera's stored reports (one row per bin)."""
    out = collections.Counter()
    con = sqlite3.connect(db)
    for (payload,) in con.execute("SELECT payload FROM reports WHERE camera = ?", (camera,)):
        for v in json.loads(payload)["volumes"]:
            out[f"{v['counter']}/{v['direction']}/{v['class']}"] += v["vehicles"]
    con.close()
    return dict(sorted(out.items()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=12, help="wall-clock minutes of chaos (default 12)")
    ap.add_argument("--cameras", type=int, default=2, help="live RTSP test cameras (default 2)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else int(time.time())
    rng = random.Random(seed)
    if not os.access(JUNCTION, os.X_OK):
        sys.exit(f"{JUNCTION}: build it first (cargo build --release)")
    tmp = tempfile.mkdtemp(prefix="junction-soak-")
    log(f"seed {seed}, folder {tmp}")
    devnull = subprocess.DEVNULL

    # Broker: persistent, so that a restart keeps the subscriber's session and queued messages.
    mq_port = free_port()
    conf = os.path.join(tmp, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(
            f"listener {mq_port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {tmp}/\nautosave_interval 1\nuser root\n"
        )
    mosquitto = "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else "mosquitto"
    broker = Proc("broker", [mosquitto, "-c", conf], stdout=devnull, stderr=devnull).start()
    time.sleep(0.5)
    sub_out = open(os.path.join(tmp, "subscriber.txt"), "a")
    sub = Proc(
        "subscriber",
        ["stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", str(mq_port), "-t", "junction/#",
         "-q", "1", "-v", "-c", "-i", "soak-subscriber"],
        stdout=sub_out, stderr=devnull,
    ).start()

    cams = []
    for i in range(a.cameras):
        port = free_port()
        p = Proc(f"rtsp-{i + 1}", ["/usr/bin/python3", os.path.join(ROOT, "scripts", "rtsp_serve.py"), str(port)],
                 stdout=devnull, stderr=devnull).start()
        cams.append({"id": f"rtsp-{i + 1}", "port": port, "proc": p, "back_at": None})
    time.sleep(1.0)

    http = free_port()
    site = os.path.join(tmp, "site.toml")
    clip = os.path.join(ROOT, "tests", "data", "street_topdown_640x360.mp4")
    cal = os.path.join(ROOT, "calibration", "example-street", "street.toml")
    model = os.path.join(ROOT, "models", "yolox_nano.toml")
    cam_toml = "".join(
        f'[[camera]]\nid = "{c["id"]}"\nuri = "rtsp://127.0.0.1:{c["port"]}/cam"\nstall_timeout_s = 3\n\n' for c in cams
    )
    cam_toml += '[[camera]]\nid = "pattern"\nuri = "test://ball?fps=10"\n\n'
    file_cam = f'[[camera]]\nid = "file"\nuri = "{clip}"\ncalibration = "{cal}"\non_inference_busy = "block"\n\n'
    common = f'[detector]\nmodel = "{model}"\nthreads = 2\n\n[aggregate]\nbins = ["1m"]\n\n'
    with open(site, "w") as f:
        f.write(
            f'site = "soak"\n{common}{cam_toml}{file_cam}[store]\npath = "{tmp}/j.db"\ncheckpoint_s = 5\n\n'
            f'[mqtt]\nurl = "mqtt://127.0.0.1:{mq_port}"\ndrain_timeout_s = 15\n\n[http]\nlisten = "127.0.0.1:{http}"\n'
        )
    jlog = open(os.path.join(tmp, "junction.log"), "a")
    junction = Proc("junction", [JUNCTION, "run", "--config", site, "--start", FILE_START, "--format", "json"],
                    stdout=devnull, stderr=jlog, cwd=ROOT, env={**os.environ, "RUST_LOG": "warn"})
    runs = []  # [start, end] wall-clock seconds of each junction process

    def start_junction():
        junction.start()
        runs.append([time.time(), None])

    counts = collections.Counter()
    start_junction()
    t_end = time.time() + a.minutes * 60
    next_action = time.time() + rng.uniform(15, 40)
    broker_back = None
    while time.time() < t_end:
        now = time.time()
        for c in cams:
            if c["back_at"] and now >= c["back_at"]:
                c["proc"].start()
                c["back_at"] = None
                log(f"camera {c['id']} back")
        if broker_back and now >= broker_back:
            broker.start()
            broker_back = None
            log("broker back")
        if not sub.alive():
            sub.start()
        if not junction.alive():
            if runs and runs[-1][1] is None:
                runs[-1][1] = now
                sys.exit(f"junction exited by itself (rc {junction.p.returncode}); see {tmp}/junction.log")
        if now >= next_action:
            action = rng.choice(["kill", "kill", "broker", "camera"])
            if action == "kill":
                junction.stop(signal.SIGKILL)
                runs[-1][1] = time.time()
                down = rng.uniform(1, 20)
                log(f"junction SIGKILLed; back in {down:.0f} s")
                time.sleep(down)
                start_junction()
                counts["kills"] += 1
            elif action == "broker" and broker_back is None:
                broker.stop()
                broker_back = now + rng.uniform(3, 30)
                counts["broker_restarts"] += 1
                log(f"broker stopped for {broker_back - now:.0f} s")
            elif action == "camera":
                c = rng.choice(cams)
                if c["back_at"] is None:
                    c["proc"].stop()
                    c["back_at"] = now + rng.uniform(10, 150)
                    counts["camera_stops"] += 1
                    log(f"camera {c['id']} stopped for {c['back_at'] - now:.0f} s")
            next_action = time.time() + rng.uniform(15, 45)
        time.sleep(0.2)

    # Everything back, then a clean stop with time to drain.
    for c in cams:
        if c["back_at"]:
            c["proc"].start()
            c["back_at"] = None
    if broker_back:
        broker.start()
    time.sleep(20)
    rc = junction.stop(signal.SIGTERM, wait=120)
    runs[-1][1] = time.time()
    time.sleep(5)
    sub.stop()
    broker.stop()
    for c in cams:
        c["proc"].stop()
    sub_out.close()

    db = os.path.join(tmp, "j.db")
    con = sqlite3.connect(db)
    stored = {}
    for rid, cam, start, payload, published in con.execute(
        "SELECT id, camera, bin_start, payload, published_at IS NOT NULL FROM reports"
    ):
        stored[rid] = (cam, start, json.loads(payload), published)
    unpublished = sum(1 for v in stored.values() if not v[3])

    # 1. Every bin each live camera was running for has a report (the first 10 s of a run load the model).
    live = [c["id"] for c in cams] + ["pattern"]
    expected = set()
    for s, e in runs:
        b = bin_start(s + 10)
        while b < e:
            expected.add(b)
            b += BIN
    have = {(v[0], v[1]) for v in stored.values()}
    missing = sorted((cam, iso(b)) for cam in live for b in expected if (cam, iso(b)) not in have)

    # 2. The subscriber's view under the consumer rule equals the store.
    seen = {}
    with open(os.path.join(tmp, "subscriber.txt")) as f:
        for line in f:
            topic, _, payload = line.rstrip("\n").partition(" ")
            if not topic.endswith("/flow"):
                continue
            r = json.loads(payload)
            old = seen.get(r["id"])
            if old is None or r.get("revision", 1) >= old.get("revision", 1):
                seen[r["id"]] = r
    mismatched = sorted(rid for rid, v in stored.items() if seen.get(rid) != v[2])
    unknown = sorted(set(seen) - set(stored))

    # 3. The replayed file's crossings equal a clean run's.
    clean_site = os.path.join(tmp, "clean.toml")
    with open(clean_site, "w") as f:
        f.write(f'site = "soak"\n{common}{file_cam}[store]\npath = "{tmp}/clean.db"\n')
    subprocess.run([JUNCTION, "run", "--config", clean_site, "--start", FILE_START, "--format", "json"],
                   cwd=ROOT, stdout=devnull, stderr=devnull, check=True)
    file_chaos, file_clean = volumes(db, "file"), volumes(os.path.join(tmp, "clean.db"), "file")

    stream_minutes = sum((e - s) for s, e in runs) / 60 * len(live)
    result = {
        "seed": seed,
        "wall_minutes": round(a.minutes, 1),
        "live_cameras": len(live),
        "stream_minutes": round(stream_minutes, 1),
        "kills": counts["kills"],
        "broker_restarts": counts["broker_restarts"],
        "camera_stops": counts["camera_stops"],
        "reports": len(stored),
        "revised": sum(1 for v in stored.values() if v[2].get("revision", 1) > 1),
        "bins_expected": len(expected) * len(live),
        "lost": len(missing),
        "unpublished": unpublished,
        "subscriber_mismatches": len(mismatched) + len(unknown),
        "file_crossings": file_chaos,
        "file_crossings_clean": file_clean,
        "final_exit": rc,
    }
    ok = not missing and not mismatched and not unknown and file_chaos == file_clean and rc == 0 and unpublished == 0
    result["ok"] = ok
    print(json.dumps(result))
    if not ok:
        log(f"missing bins: {missing[:10]}; mismatched ids: {mismatched[:5]}; unknown: {unknown[:5]}; folder kept: {tmp}")
    elif not a.keep:
        subprocess.run(["rm", "-rf", tmp], check=False)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
